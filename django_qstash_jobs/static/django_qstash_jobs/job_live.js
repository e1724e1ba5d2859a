// Keeps a job's admin page current while the job runs, through its Server-Sent Events stream.
// Progress is updated in place; a change of status reloads the page, which the server renders
// in full (result, error, traceback). Nothing happens on pages without [data-qstash-events].
"use strict";
(function () {
    function start() {
        var holder = document.querySelector("[data-qstash-events]");
        if (!holder || !window.EventSource) {
            return;
        }
        var shown = holder.getAttribute("data-qstash-status");
        var source = new EventSource(holder.getAttribute("data-qstash-events"));

        function update(event) {
            var job = JSON.parse(event.data);
            if (job.status !== shown) {
                source.close();
                window.location.reload();
                return;
            }
            var bar = document.querySelector(".qstash-progress progress");
            if (bar) {
                bar.value = job.progress;
            }
            var text = document.querySelector(".qstash-progress__text");
            if (text) {
                text.textContent = job.progress + "%";
            }
            var message = document.querySelector(".qstash-progress__message");
            if (message) {
                message.textContent = job.progress_message;
            }
        }

        source.addEventListener("status", update);
        source.addEventListener("done", function (event) {
            source.close();
            update(event);
        });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();
