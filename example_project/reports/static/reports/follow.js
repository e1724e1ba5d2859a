// Follows a job through the status stream (Server-Sent Events) until it is finished, then
// shows the download link or the error.
(() => {
  const panel = document.getElementById("job");
  const part = (name) => panel.querySelector(`[data-${name}]`);
  const source = new EventSource(panel.dataset.eventsUrl);

  const show = (event) => {
    const job = JSON.parse(event.data);
    part("status").textContent = job.status;
    part("status").className = `badge ${job.status}`;
    part("message").textContent = job.progress_message;
    panel.querySelector("progress").value = job.progress;
    return job;
  };

  source.addEventListener("status", show);
  source.addEventListener("done", (event) => {
    // Closed here, or EventSource would reconnect when the server ends the stream.
    source.close();
    const job = show(event);
    if (job.status === "completed") {
      panel.querySelector("progress").value = 100;
      part("size").textContent = `${(job.result.size / 1024).toFixed(1)} KB`;
      part("download").classList.remove("hidden");
    } else {
      part("error").textContent = job.error || `The job was ${job.status}.`;
      part("error").classList.remove("hidden");
    }
  });
})();
