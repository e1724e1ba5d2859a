from __future__ import annotations

from datetime import date, timedelta

from django import forms


def _first_of_month() -> date:
    return date.today().replace(day=1)


def _end_of_month() -> date:
    next_month = (_first_of_month() + timedelta(days=32)).replace(day=1)
    return next_month - timedelta(days=1)


class ReportForm(forms.Form):
    report_type = forms.ChoiceField(
        label="Report",
        choices=[("monthly-analytics", "Jobs: counts and failure rates"), ("signups", "Sign-ups")],
    )
    start_date = forms.DateField(initial=_first_of_month, widget=forms.DateInput({"type": "date"}))
    end_date = forms.DateField(initial=_end_of_month, widget=forms.DateInput({"type": "date"}))
    format = forms.ChoiceField(choices=[("pdf", "PDF"), ("html", "HTML"), ("csv", "CSV")])


class ExportForm(forms.Form):
    entity_type = forms.ChoiceField(
        label="Data",
        choices=[
            ("users", "Users"),
            ("subscriptions", "Subscriptions"),
            ("job_executions", "Jobs"),
        ],
    )
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("json", "JSON"), ("jsonl", "JSON lines")])
    created_after = forms.DateField(
        required=False, widget=forms.DateInput({"type": "date"}), help_text="Optional."
    )
