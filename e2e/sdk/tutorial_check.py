"""Helper of e2e/sdk/tutorial.sh (Python standard library only).

  tutorial_check.py create-device ID
      registers ID over the emulator's REST API and prints its primary key
  tutorial_check.py verify --lang python|node --device-id ID --device-log F --service-log F
      checks what the tutorial's two programs printed and what the emulator
      holds afterwards; prints one line per check, exits 1 if any failed
  tutorial_check.py verify --simulated --lang python --device-id ID --service-log F
      the same for a device the emulator simulates: instead of its output,
      its reported properties must echo the desired patch
  tutorial_check.py connected ID
      exits 0 when the device is connected

REST calls go to the plain HTTP listener (EMULATOR_HTTP_URL, default
http://127.0.0.1:8080), signed with the key of IOTHUB_CONNECTION_STRING.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("EMULATOR_HTTP_URL", "http://127.0.0.1:8080").rstrip("/")
API = "api-version=2021-04-12"

# How each port names its job ids in its output (the tutorials' own lines).
JOB_ID_LINES = {
    "python": (r"Direct method called with Job Id: (\S+)", r"Device twin called with Job Id: (\S+)"),
    "node": (r"scheduling Device Method job with id: (\S+)", r"scheduling Twin Update job with id: (\S+)"),
}
# How each port reports that both jobs completed.
COMPLETED_LINES = {
    "python": (r"Job {method} \(scheduleDeviceMethod\): completed", r"Job {twin} \(scheduleUpdateTwin\): completed"),
    "node": (r"^Device method job: completed$", r"^Twin update job: completed$"),
}
# The desired patch as each device program prints it: a dict (Python) or JSON (Node).
PATCH_LINES = {
    "python": r"""['"]building['"]: 43\b.*['"]floor['"]: 3\b""",
    "node": r'"building":43\b.*"floor":3\b',
}


def token():
    fields = dict(p.split("=", 1) for p in os.environ["IOTHUB_CONNECTION_STRING"].split(";") if "=" in p)
    sr = urllib.parse.quote_plus(fields["HostName"])
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(fields["SharedAccessKey"]),
                                    f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    return (f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}"
            f"&se={se}&skn={fields['SharedAccessKeyName']}")


def rest(method, path, body=None):
    sep = "&" if "?" in path else "?"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{BASE}{path}{sep}{API}", data=data, method=method,
                                 headers={"Authorization": token(),
                                          "Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def create_device(device_id):
    status, body = rest("PUT", f"/devices/{urllib.parse.quote(device_id, safe='')}", {"deviceId": device_id})
    if status != 200:
        sys.exit(f"create {device_id}: {status} {body}")
    print(body["authentication"]["symmetricKey"]["primaryKey"])


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, ok, what, detail=""):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}{'' if ok or not detail else ': ' + detail}")
        if not ok:
            self.failed += 1
        return ok


def dig(obj, *keys):
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def verify(args):
    with open(args.service_log, encoding="utf-8", errors="replace") as f:
        service_out = f.read()
    c = Checks()

    if args.simulated:
        print("simulated device:")
        deadline = time.time() + 10
        while True:
            status, twin = rest("GET", f"/twins/{urllib.parse.quote(args.device_id, safe='')}")
            reported = dig(twin, "properties", "reported") or {}
            ok = status == 200 and reported.get("building") == 43 and reported.get("floor") == 3
            if ok or time.time() > deadline:
                break
            time.sleep(0.2)
        c.check(ok, "reported properties echo the desired patch (building 43, floor 3)",
                f"{status} reported={json.dumps(reported)[:300] if isinstance(reported, dict) else twin}")
    else:
        with open(args.device_log, encoding="utf-8", errors="replace") as f:
            device_out = f.read()
        print(f"device output ({args.lang}):")
        c.check(re.search(r"^Received method \[lockDoor\]$", device_out, re.M), "lockDoor direct method received")
        c.check(re.search(r'payload: \{"lockTime":"10m"\}', device_out), 'its payload is {"lockTime":"10m"}')
        c.check(re.search(r"Twin desired properties patch received:\n.*" + PATCH_LINES[args.lang], device_out),
                "desired patch with building 43 and floor 3 received")

    print(f"service output ({args.lang}):")
    ids = [re.search(p, service_out) for p in JOB_ID_LINES[args.lang]]
    if not c.check(all(ids), "both job ids printed"):
        return 1
    method_job, twin_job = (m.group(1) for m in ids)
    for pattern, name in zip(COMPLETED_LINES[args.lang], ("method job", "twin job")):
        c.check(re.search(pattern.format(method=re.escape(method_job), twin=re.escape(twin_job)), service_out, re.M),
                f"{name} reported completed")

    print("emulator state:")
    status, twin = rest("GET", f"/twins/{urllib.parse.quote(args.device_id, safe='')}")
    desired = dig(twin, "properties", "desired") or {}
    c.check(status == 200 and desired.get("building") == 43 and desired.get("floor") == 3,
            f"GET /twins/{args.device_id}: desired building 43, floor 3",
            f"{status} desired={json.dumps(desired)[:300] if isinstance(desired, dict) else twin}")

    for job_id, kind in ((method_job, "scheduleDeviceMethod"), (twin_job, "scheduleUpdateTwin")):
        status, job = rest("GET", f"/jobs/v2/{urllib.parse.quote(job_id, safe='')}")
        stats = dig(job, "deviceJobStatistics") or {}
        c.check(status == 200 and job.get("type") == kind and job.get("status") == "completed"
                and stats.get("succeededCount") == 1 and stats.get("failedCount") == 0,
                f"GET /jobs/v2/{job_id}: {kind} completed, succeededCount 1, failedCount 0",
                f"{status} {json.dumps(job)[:500] if isinstance(job, dict) else job}")

    query = f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{method_job}'"
    status, rows = rest("POST", "/devices/query", {"query": query})
    ok = status == 200 and isinstance(rows, list) and len(rows) == 1
    row = rows[0] if ok else {}
    c.check(ok and row.get("deviceId") == args.device_id and row.get("status") == "completed"
            and dig(row, "outcome", "deviceMethodResponse", "status") == 200,
            f"devices.jobs for {method_job}: {args.device_id} completed, outcome.deviceMethodResponse.status 200",
            f"{status} {json.dumps(rows)[:500] if not isinstance(rows, str) else rows}")

    return 1 if c.failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("create-device")
    p.add_argument("device_id")
    p = sub.add_parser("verify")
    p.add_argument("--lang", choices=sorted(JOB_ID_LINES), required=True)
    p.add_argument("--device-id", required=True)
    p.add_argument("--device-log")
    p.add_argument("--service-log", required=True)
    p.add_argument("--simulated", action="store_true")
    p = sub.add_parser("connected")
    p.add_argument("device_id")
    args = parser.parse_args()
    if args.cmd == "create-device":
        create_device(args.device_id)
        return 0
    if args.cmd == "connected":
        status, dev = rest("GET", f"/devices/{urllib.parse.quote(args.device_id, safe='')}")
        return 0 if status == 200 and dev.get("connectionState") == "Connected" else 1
    if not args.simulated and not args.device_log:
        parser.error("--device-log is required unless --simulated")
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
