"""enqueue_on: model signals that enqueue jobs after the commit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_save

from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.signals import enqueue_on
from tests.testapp.models import Article, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def on_publish() -> Iterator[None]:
    receiver = enqueue_on(
        post_save,
        Article,
        "echo",
        payload=lambda instance, **kwargs: {"message": instance.title},
        metadata=lambda instance, **kwargs: {"idempotency_key": f"article-{instance.pk}"},
        when=lambda instance, created, **kwargs: instance.published,
        dispatch_uid="test-article-published",
    )
    yield
    post_save.disconnect(receiver, sender=Article, dispatch_uid="test-article-published")


@pytest.mark.usefixtures("on_publish")
def test_a_matching_save_enqueues_once_per_key() -> None:
    article = Article.objects.create(title="draft")
    assert not JobExecution.objects.exists()  # `when` said no

    article.published = True
    article.save()
    article.save()  # same idempotency key: no second job

    execution = JobExecution.objects.get()
    assert execution.payload == {"message": "draft", "times": 1}  # schema defaults stored
    assert execution.idempotency_key == f"article-{article.pk}"
    assert execution.status == JobStatus.COMPLETED


@pytest.mark.usefixtures("on_publish")
def test_the_job_waits_for_the_commit_and_dies_with_a_rollback() -> None:
    with transaction.atomic():
        Article.objects.create(title="kept", published=True)
        assert not SideEffect.objects.exists()
    assert SideEffect.objects.count() == 1

    with pytest.raises(RuntimeError), transaction.atomic():
        Article.objects.create(title="rolled back", published=True)
        raise RuntimeError
    assert JobExecution.objects.count() == 1


def test_a_bad_payload_raises_in_the_code_that_saved() -> None:
    receiver = enqueue_on(
        post_save, Article, "echo", payload={"wrong": 1}, dispatch_uid="test-bad-payload"
    )
    try:
        with pytest.raises(ValueError, match="message: Field required"):
            Article.objects.create(title="x")
    finally:
        post_save.disconnect(receiver, sender=Article, dispatch_uid="test-bad-payload")


def test_a_payload_that_is_not_a_dict_is_refused_not_emptied() -> None:
    # "inspect" takes any dict; a list from the builder is a mistake to report, not {}.
    receiver = enqueue_on(
        post_save, Article, "inspect", payload=lambda **kwargs: [], dispatch_uid="test-list"
    )
    try:
        with pytest.raises(ValueError, match="must be a dict, not list"):
            Article.objects.create(title="x")
    finally:
        post_save.disconnect(receiver, sender=Article, dispatch_uid="test-list")
    assert not JobExecution.objects.exists()


def test_two_registrations_that_differ_only_in_their_builders_both_connect() -> None:
    def register(first: bool) -> Any:
        # Lambdas made in one function: the same name, different places, different payloads.
        if first:
            return enqueue_on(
                post_save, Article, "echo", payload=lambda instance, **kwargs: {"message": "A"}
            )
        return enqueue_on(
            post_save, Article, "echo", payload=lambda instance, **kwargs: {"message": "B"}
        )

    def made_for(message: str) -> Any:
        # Closures of one factory share their code: what they captured tells them apart.
        return lambda instance, **kwargs: {"message": message}

    receivers = [register(True), register(False), register(True)]
    receivers += [
        enqueue_on(post_save, Article, "echo", payload=made_for(message)) for message in "CDC"
    ]
    assert receivers[0].dispatch_uid == receivers[2].dispatch_uid != receivers[1].dispatch_uid
    assert receivers[3].dispatch_uid == receivers[5].dispatch_uid != receivers[4].dispatch_uid
    try:
        Article.objects.create(title="x")
    finally:
        for receiver in receivers:
            post_save.disconnect(sender=Article, dispatch_uid=receiver.dispatch_uid)

    # Two builders, two jobs; the same registration made again connected once.
    messages = JobExecution.objects.values_list("payload__message", flat=True)
    assert sorted(messages) == ["A", "B", "C", "D"]


def test_a_fixture_loaded_sends_no_job() -> None:
    # loaddata saves with raw=True: a welcome email per user of a fixture is not wanted.
    from django.core import serializers

    receiver = enqueue_on(post_save, Article, "echo", payload={"message": "x"}, dispatch_uid="r")
    try:
        fixture = serializers.serialize("json", [Article(pk=7, title="from a fixture")])
        for loaded in serializers.deserialize("json", fixture):
            loaded.save()
    finally:
        post_save.disconnect(receiver, sender=Article, dispatch_uid="r")
    assert Article.objects.filter(pk=7).exists()
    assert not JobExecution.objects.exists()


def test_pre_save_is_refused_for_it_comes_before_the_row() -> None:
    from django.db.models.signals import pre_save

    with pytest.raises(TypeError, match="connect it to post_save"):
        enqueue_on(pre_save, Article, "echo", payload={"message": "x"})


def test_the_job_waits_for_the_commit_whatever_enqueue_on_commit_says(settings: Any) -> None:
    # With ENQUEUE_ON_COMMIT off, a failed publish rolled back the job's row with the
    # wrapper's transaction and raised out of save(), after the article was saved.
    from django_qstash_jobs import outbox
    from django_qstash_jobs.exceptions import EnqueueError

    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "ENQUEUE_ON_COMMIT": False}
    receiver = enqueue_on(post_save, Article, "echo", payload={"message": "x"}, dispatch_uid="c")
    publish = outbox.publish

    def unreachable(executions: Any) -> None:
        raise EnqueueError("QStash could not be reached (test)")

    outbox.publish = unreachable  # type: ignore[assignment]
    try:
        article = Article.objects.create(title="saved")
    finally:
        outbox.publish = publish  # type: ignore[assignment]
        post_save.disconnect(receiver, sender=Article, dispatch_uid="c")
    assert Article.objects.filter(pk=article.pk).exists()
    assert JobExecution.objects.get().status == JobStatus.PENDING  # for republish_jobs


@pytest.mark.django_db(databases=["default", "other"], transaction=True)
def test_a_model_on_another_database_waits_for_its_own_commit() -> None:
    receiver = enqueue_on(
        post_save,
        Article,
        "echo",
        payload=lambda instance, **kwargs: {"message": instance.title},
        dispatch_uid="o",
    )
    try:
        with pytest.raises(RuntimeError), transaction.atomic(using="other"):
            Article.objects.using("other").create(title="rolled back")
            raise RuntimeError
        assert not JobExecution.objects.exists()

        with transaction.atomic(using="other"):
            Article.objects.using("other").create(title="kept")
            assert not JobExecution.objects.exists()  # not before the article is visible
        assert JobExecution.objects.get().payload["message"] == "kept"
        assert SideEffect.objects.count() == 1
    finally:
        post_save.disconnect(receiver, sender=Article, dispatch_uid="o")


def test_bound_methods_of_two_instances_both_connect() -> None:
    class Notifier:
        def __init__(self, message: str) -> None:
            self.message = message

        def payload(self, **kwargs: Any) -> dict[str, str]:
            return {"message": self.message}

    receivers = [
        enqueue_on(post_save, Article, "echo", payload=Notifier(message).payload)
        for message in "AB"
    ]
    try:
        assert receivers[0].dispatch_uid != receivers[1].dispatch_uid
        Article.objects.create(title="x")
    finally:
        for receiver in receivers:
            post_save.disconnect(receiver, sender=Article, dispatch_uid=receiver.dispatch_uid)
    assert sorted(JobExecution.objects.values_list("payload__message", flat=True)) == ["A", "B"]
