"""Workers on AWS Lambda: wire format, stores, handler, invokers, a local Lambda runtime, the backend.

Nothing here imports boto3 or redis at module level; see docs/serverless.md.
"""
