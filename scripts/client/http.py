"""A server reached by URL: `gen3d serve`, `make run-local`, any container on a port.

Redirects are never followed: requests would re-send the photo (a 307/308 keeps the
body) to whatever origin the Location names. A 3xx is reported with where it pointed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from gen3d.client.errors import InputError, ServerError, TransportError, from_error_body
from gen3d.client.inputs import CUSTOM_ATTRIBUTES, Request
from gen3d.client.transport import Limits, Reply


class HttpTransport:
    def __init__(self, url: str, max_batch_items: int | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # "127.0.0.1:8080" would otherwise fail inside requests ("No connection
            # adapters were found"), which does not say what to change
            raise InputError(
                f"{url!r} is not a server URL: add http:// (e.g. http://127.0.0.1:8080)"
            )
        self.url = url.rstrip("/")
        self.description = self.url
        self._max_batch_items = max_batch_items
        self._limits: Limits | None = None
        self._session = requests.Session()

    def limits(self) -> Limits:
        """The body limit from /execution-parameters (MaxPayloadInMB); the item limit is
        not published, so it is the default unless given (a 413 splits further)."""
        if self._limits is None:
            limits = Limits()
            if self._max_batch_items is not None:
                limits = Limits(self._max_batch_items, limits.max_body_bytes)
            try:
                response = self._session.get(
                    self.url + "/execution-parameters", timeout=10, allow_redirects=False
                )
                if response.status_code == 200:
                    mb = int(response.json()["MaxPayloadInMB"])
                    limits = Limits(limits.max_batch_items, mb * 1024 * 1024)
            except (requests.RequestException, ValueError, KeyError, TypeError):
                pass  # an older or foreign server: keep the defaults
            self._limits = limits
        return self._limits

    def send(self, request: Request, timeout_s: float) -> Reply:
        headers = {"Content-Type": request.content_type, "Accept": request.accept}
        if request.custom_attributes:
            headers[CUSTOM_ATTRIBUTES] = request.custom_attributes
        try:
            response = self._session.post(
                self.url + "/invocations",
                data=request.body,
                headers=headers,
                timeout=timeout_s,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise TransportError(f"{self.url} did not answer within {timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise TransportError(f"could not reach {self.url}: {exc}") from None
        if response.is_redirect:
            raise ServerError(
                f"redirected to {response.headers.get('Location')!r}; not followed (a "
                "redirect would re-send the input elsewhere: use the final URL)",
                status=response.status_code,
                code="redirect",
            )
        if response.status_code != 200:
            retry_after = response.headers.get("Retry-After")
            raise from_error_body(
                response.content,
                status=response.status_code,
                retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return Reply(
            response.content,
            response.headers.get("Content-Type"),
            response.headers.get("X-Gen3D-Metadata"),
        )
