"""Automations that react to prefect-ray-ft runs. Create (or replace) them on the current Prefect API:

    python deployments/automations.py [--notify BLOCK_NAME]

- "rayft: error rate warning": a run's error rate passed `warn_error_rate` (event rayft.error-rate.warning)
- "rayft: circuit breaker tripped": a transform's breaker opened (event rayft.circuit.tripped)
- "rayft: run failed": a rayft-etl flow run ended Failed or Crashed

With --notify, each sends a notification through that saved notification Block (Slack, e-mail, ...);
without it they only record that they fired (visible in the UI's event feed), ready for you to edit.
"""

from __future__ import annotations

import argparse

from prefect.automations import Automation
from prefect.events.actions import DoNothing, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

NAMES = ("rayft: error rate warning", "rayft: circuit breaker tripped", "rayft: run failed")


def _action(notify_block_id=None, subject="", body=""):
    if notify_block_id is None:
        return DoNothing()
    return SendNotification(block_document_id=notify_block_id, subject=subject, body=body)


def create_automations(notify_block: str | None = None) -> list[Automation]:
    block_id = None
    if notify_block:
        from prefect.blocks.core import Block
        block_id = Block.load(notify_block)._block_document_id
    specs = [
        (NAMES[0], EventTrigger(expect={"rayft.error-rate.warning"}, posture=Posture.Reactive, threshold=1),
         "rayft: error rate {{ event.payload.error_rate }} at {{ event.resource.name }}",
         "{{ event.payload.rows_quarantined }} of {{ event.payload.rows_in }} rows quarantined "
         "(run {{ event.payload.flow_run_id }})"),
        (NAMES[1], EventTrigger(expect={"rayft.circuit.tripped"}, posture=Posture.Reactive, threshold=1),
         "rayft: circuit {{ event.payload.circuit }} tripped", "run {{ event.payload.flow_run_id }}"),
        (NAMES[2], EventTrigger(expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                                match_related={"prefect.resource.role": "flow",
                                               "prefect.resource.name": "rayft-etl"},
                                posture=Posture.Reactive, threshold=1),
         "rayft: run {{ flow_run.name }} failed", "See the rayft-failure-state artifact of the run."),
    ]
    created = []
    for name, trigger, subject, body in specs:
        try:
            Automation.read(name=name).delete()
        except ValueError:
            pass
        created.append(Automation(name=name, trigger=trigger,
                                  actions=[_action(block_id, subject, body)]).create())
    return created


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notify", help="name of a saved notification Block")
    for automation in create_automations(parser.parse_args().notify):
        print(f"created automation {automation.name!r} ({automation.id})")
