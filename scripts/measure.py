#!/usr/bin/env python3
"""Measures a running embedded cassa (the figures in the closing notes):

  latency  - create → PAYMENT_PENDING over HTTP, sequential, N payments
  dispatch - applications/s: N application events published with kcat until N
             payments are committed (counted in the SQLite file)

Usage: scripts/measure.py latency BASE_URL N
       scripts/measure.py dispatch BASE_URL N KAFKA_BOOTSTRAP SQLITE_FILE
"""
import json, sqlite3, statistics, subprocess, sys, time, urllib.request, uuid

TENANT = "00000000-0000-4000-8000-000000000001"
SERVICE = "00000000-0000-4000-8000-000000000002"
PAYER = {"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario"}


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def latency(base, n):
    samples = []
    for i in range(n):
        start = time.perf_counter()
        p = call("POST", f"{base}/v1/payments", {"type": "PAGOPA", "tenant_id": TENANT, "service_id": SERVICE,
                                                  "reason": "latency", "payment": {"amount": "10.00"}, "payer": PAYER})
        while call("GET", f"{base}/v1/payments/{p['id']}")["status"] != "PAYMENT_PENDING":
            time.sleep(0.001)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    print(f"payments={n} create_to_pending_p50_ms={statistics.median(samples):.1f} "
          f"create_to_pending_p99_ms={samples[int(len(samples) * 0.99) - 1]:.1f} max_ms={samples[-1]:.1f}")


def dispatch(base, n, bootstrap, db):
    lines = []
    for i in range(n):
        app_id = str(uuid.uuid4())
        lines.append(app_id + "\t" + json.dumps({
            "id": app_id, "event_id": str(uuid.uuid4()), "event_version": "2.0", "tenant_id": TENANT,
            "service_id": SERVICE, "user": str(uuid.uuid4()), "status_name": "status_payment_pending",
            "payment_data": {"amount": 12.5, "reason": "dispatch"},
            "data": {"applicant.data.completename.data.name": "Mario",
                     "applicant.data.fiscal_code.data.fiscal_code": "RSSMRA80A01H501U"}}))
    con = sqlite3.connect(db)
    before = con.execute("SELECT count(*) FROM payments WHERE remote_id IS NOT NULL").fetchone()[0]
    start = time.perf_counter()
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "applications", "-K", "\t", "-l", "/dev/stdin"],
                   input="\n".join(lines).encode(), check=True)
    produced = time.perf_counter() - start
    while con.execute("SELECT count(*) FROM payments WHERE remote_id IS NOT NULL").fetchone()[0] < before + n:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    print(f"applications={n} produce_s={produced:.2f} dispatched_s={elapsed:.2f} applications_per_sec={n / elapsed:.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "latency":
        latency(sys.argv[2], int(sys.argv[3]))
    else:
        dispatch(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
