"""What a ``/mgmt/bpl`` action gets: :class:`MgmtContext` (the management service and the
AA's ways of naming PVs in a request) and the helpers the action modules share."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..mgmt.pvinput import InputError, names_from_body, split_names
from ..mgmt.service import Mgmt
from ..mgmt.typeinfo import PVTypeInfo
from .bpl import BPLError, Context


@dataclass
class MgmtContext(Context):
    @property
    def mgmt(self) -> Mgmt:
        return self.service  # type: ignore[no-any-return]

    def pv_names(self) -> list[str]:
        """Names from ``pv=`` (comma lists) and, for POST, the body in any AA form."""
        names = split_names(self.all("pv"))
        if self.request.method == "POST" and self.body:
            try:
                names += names_from_body(self.content_type, self.body)
            except InputError as e:
                raise BPLError(400, str(e)) from None
        return names

    def one_pv(self) -> str:
        return self.required("pv")


def typeinfo_from_body(ctx: MgmtContext) -> PVTypeInfo:
    """The PVTypeInfo JSON a POST carries; 400 with the reason when it is not one."""
    try:
        data = json.loads(ctx.body.decode("utf-8", "replace") or "null")
    except json.JSONDecodeError as e:
        raise BPLError(400, f"The body is not valid JSON: {e}") from None
    try:
        return PVTypeInfo.from_json(data)
    except ValueError as e:
        raise BPLError(400, str(e)) from None
