"""Verifies deliveries with the Standard Webhooks reference library, as a receiver would.

Reads a JSON list of {"headers": {...}, "body": "..."} on stdin and the subscription's secret
from WEBHOOK_SECRET; every delivery must verify. Prints the message ids in order, one per line.
"""

import json
import os
import sys

from standardwebhooks.webhooks import Webhook

deliveries = json.load(sys.stdin)
hook = Webhook(os.environ["WEBHOOK_SECRET"])
for delivery in deliveries:
    # Raises WebhookVerificationError on a bad signature or a stale timestamp.
    payload = hook.verify(delivery["body"], delivery["headers"])
    assert payload["type"] and "data" in payload, payload
    print(delivery["headers"]["webhook-id"])
