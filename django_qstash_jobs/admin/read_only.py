"""What the two admins share: read-only pages, and actions for those who may change rows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_permission_codename
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

if TYPE_CHECKING:
    _Admin = admin.ModelAdmin[Any]
else:
    _Admin = object

# Django 6.1+ can also offer actions on the change form; older versions only on the list.
_ActionLocation = getattr(admin, "ActionLocation", None)
#: Keyword arguments of ``@admin.action`` that offer it wherever this Django can.
ACTION_PLACES: dict[str, Any] = (
    {"location": [_ActionLocation.CHANGE_LIST, _ActionLocation.CHANGE_FORM]}
    if _ActionLocation is not None
    else {}
)


def pretty_json(value: Any) -> SafeString:
    """JSON indented for reading, escaped, in a ``<pre>``."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    return format_html('<pre class="qstash-json">{}</pre>', text)


class ReadOnlyWithActions(_Admin):
    """Rows are never added or edited here: the detail page renders read-only.

    The actions (``permissions=["operate"]``) need the change permission instead, checked by
    :meth:`has_operate_permission`. Put this mixin before ``admin.ModelAdmin``.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets or [])
