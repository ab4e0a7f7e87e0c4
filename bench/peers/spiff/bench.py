"""SpiffWorkflow peer: N two-task lifecycles, in memory, one caller.

Prints one line:
  peer=spiff version=<v> lifecycles=<N> seconds=<s> rate=<per second>
"""
import os
import sys
import time
from importlib.metadata import version

from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

HERE = os.path.dirname(os.path.abspath(__file__))
BPMN = os.path.join(HERE, "two_tasks.bpmn")
PROCESS_ID = "two_tasks"


def complete_ready_user_task(wf, expected_spec, var):
    """Complete the single READY user task, which must be `expected_spec`."""
    ready = wf.get_tasks(state=TaskState.READY, manual=True)
    if len(ready) != 1 or ready[0].task_spec.name != expected_spec:
        raise AssertionError(
            f"expected one READY user task {expected_spec}, got "
            f"{[t.task_spec.name for t in ready]}"
        )
    task = ready[0]
    task.set_data(**{var: True})
    task.run()
    wf.do_engine_steps()


def lifecycle(spec, subprocess_specs):
    wf = BpmnWorkflow(spec, subprocess_specs)  # a new instance every time
    wf.do_engine_steps()  # start event -> task A becomes READY
    complete_ready_user_task(wf, "task_a", "a_done")
    complete_ready_user_task(wf, "task_b", "b_done")
    if not wf.is_completed():
        raise AssertionError("instance did not reach its end event")
    if wf.data.get("a_done") is not True or wf.data.get("b_done") is not True:
        raise AssertionError(f"completion variables missing: {wf.data!r}")


def main():
    raw = os.environ.get("PEER_N", "2000")
    n = int(raw) if raw.isdigit() else 0
    if n <= 0:
        raise ValueError(f"bad PEER_N: {raw}")
    # Parse the definition once, before timing.
    parser = BpmnParser()
    parser.add_bpmn_file(BPMN)
    spec = parser.get_spec(PROCESS_ID)
    subprocess_specs = parser.get_subprocess_specs(PROCESS_ID)

    t0 = time.perf_counter()
    for _ in range(n):
        lifecycle(spec, subprocess_specs)
    secs = time.perf_counter() - t0

    print(
        f"peer=spiff version={version('SpiffWorkflow')} lifecycles={n} "
        f"seconds={secs:.3f} rate={int(n / secs)}"
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # fail loudly: no rate line
        print(f"spiff peer failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
