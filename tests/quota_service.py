"""A Service Quotas stand-in on 127.0.0.1 for the tests: moto 5 implements neither
ListServiceQuotas nor RequestServiceQuotaIncrease (its server answers 500).

It speaks the service's wire protocol (JSON 1.1, X-Amz-Target ServiceQuotasV20190624.*),
so boto3 reaches it through AWS_ENDPOINT_URL_SERVICE_QUOTAS exactly as it reaches AWS, with
botocore's serialisation, parsing and the strict request validation of aws_requests on
the way. Tests set `applied` / `defaults` (quota name -> value); what a request asked for
lands in `requests`. Codes are made up per name (AWS's are L- and 8 characters too).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "ServiceQuotasV20190624."
PAGE = 2  # small pages, so paging is exercised


def quota_code(name: str) -> str:
    return "L-" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()


@dataclass
class QuotaState:
    applied: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.applied.clear()
        self.defaults.clear()
        self.requests.clear()

    def _page(self, table: dict[str, float], body: dict[str, Any]) -> dict[str, Any]:
        names = sorted(table)
        start = int(body.get("NextToken") or 0)
        page = [
            {
                "ServiceCode": body["ServiceCode"],
                "QuotaCode": quota_code(name),
                "QuotaName": name,
                "Value": table[name],
                "Adjustable": True,
            }
            for name in names[start : start + PAGE]
        ]
        answer: dict[str, Any] = {"Quotas": page}
        if start + PAGE < len(names):
            answer["NextToken"] = str(start + PAGE)
        return answer

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("ServiceCode") != "sagemaker":
            return 400, {"__type": "NoSuchResourceException", "message": "unknown service"}
        if operation == "ListServiceQuotas":
            return 200, self._page(self.applied, body)
        if operation == "ListAWSDefaultServiceQuotas":
            return 200, self._page(self.defaults, body)
        if operation == "RequestServiceQuotaIncrease":
            by_code = {quota_code(n): n for n in {**self.defaults, **self.applied}}
            if body["QuotaCode"] not in by_code:
                return 400, {"__type": "NoSuchResourceException", "message": "no such quota"}
            self.requests.append(body)
            return 200, {
                "RequestedQuota": {
                    "Id": f"req-{len(self.requests)}",
                    "ServiceCode": "sagemaker",
                    "QuotaCode": body["QuotaCode"],
                    "QuotaName": by_code[body["QuotaCode"]],
                    "DesiredValue": body["DesiredValue"],
                    "Status": "PENDING",
                }
            }
        return 400, {"__type": "InvalidAction", "message": f"{operation} not in the stand-in"}


STATE = QuotaState()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        target = self.headers.get("X-Amz-Target", "")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        status, payload = STATE.answer(target.removeprefix(PREFIX), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:  # quiet
        pass


def start() -> tuple[str, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server
