"""The multipart form of a REST request, read into memory: its file parts checked against the limits.

Nothing touches the disk: Starlette spools uploads over 1 MB into temporary files, so the form is parsed with a
spool limit above the request limit (the body-size middleware stops larger bodies first).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from service.core.config import Settings
from service.core.errors import BadInput, InvalidField, UnsupportedMedia


class InMemoryMultiPartParser(MultiPartParser):
    spool_max_size = 1 << 62  # never roll over to a temporary file


@dataclass
class Upload:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def label(self) -> str:
        return repr(self.filename) if self.filename else f"field {self.field!r}"


async def read_form(request: Request, settings: Settings) -> dict[str, list[Upload]]:
    """The form's parts by field name, in order. 415 when not multipart, 400 when malformed."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        shown = content_type.split(";")[0] or "none"
        raise UnsupportedMedia(f"send multipart/form-data with the image(s) or video in field 'file' "
                               f"(content type was {shown})")
    parser = InMemoryMultiPartParser(request.headers, request.stream(), max_files=settings.max_files + 8,
                                     max_fields=16, max_part_size=settings.max_request_bytes)
    try:
        form = await parser.parse()
    except ClientDisconnect:  # nobody will read the answer; recorded as the client's error, not a 500
        raise BadInput("the client closed the connection before the upload was complete") from None
    except MultiPartException as exc:
        if exc.message.startswith("Too many"):
            raise InvalidField(f"too many form parts; the limit is {settings.max_files} files per request") from None
        raise BadInput(f"malformed multipart body: {exc.message}") from None
    parts: dict[str, list[Upload]] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                value.file.seek(0)
                upload = Upload(name, value.filename, value.content_type, value.file.read())
            else:
                upload = Upload(name, None, "text/plain", value.encode())
            parts.setdefault(name, []).append(upload)
    finally:
        await form.close()
    return parts


def file_parts(parts: dict[str, list[Upload]], settings: Settings) -> list[Upload]:
    files = parts.get("file", [])
    if not files:
        fields = ", ".join(sorted(parts)) or "none"
        raise InvalidField(f"field 'file' is required: one image, the field repeated for a clip, or one video "
                           f"(fields sent: {fields})")
    if len(files) > settings.max_files:
        raise InvalidField(f"{len(files)} files sent; the limit is {settings.max_files} frames per request")
    return files
