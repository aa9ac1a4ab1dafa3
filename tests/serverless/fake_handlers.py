"""Small handlers for the local-runtime tests (run inside awslambdaric processes)."""
import os
import time


def echo(event, context):
    return {"event": event, "remaining_ms": context.get_remaining_time_in_millis(),
            "pid": os.getpid(), "memory": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            "secret": os.environ.get("RA_FAKE_SECRET"),
            "leak": os.environ.get("RA_SERVER_ADMIN_PASSWORD")}


def act(event, context):
    what = event.get("do")
    if what == "sleep":
        time.sleep(event["s"])
        return {"slept": event["s"]}
    if what == "big":
        return "x" * event["n"]
    if what == "hog":
        blob = b"\x01" * (event["mb"] * 1024 * 1024)  # written, so every page is resident
        time.sleep(0.5)
        return {"held": len(blob)}
    if what == "raise":
        raise RuntimeError("boom from the handler")
    if what == "exit":
        os._exit(3)
    if what == "touch":
        return touch(event, context)
    print("hello from the handler")
    return {"ok": True, "pid": os.getpid()}


def touch(event, context):
    with open(event["path"], "a") as f:
        f.write("x")
    return {"ok": True}
