// bpmn-engine peer: N two-task lifecycles, in memory, one caller.
//
// Prints one line:
//   peer=bpmn-engine version=<v> lifecycles=<N> seconds=<s> rate=<per second>
//
// The BPMN file is parsed (bpmn-moddle) and serialized (moddle-context-serializer)
// ONCE, as in the engine's documented `addSource({sourceContext})` example; every
// lifecycle then builds a new Engine (new Definition, Process, activities, broker)
// from that source context, executes it, signals task A, then task B, and waits
// for the engine's `end` event.
import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';

import BpmnModdle from 'bpmn-moddle';
import * as elements from 'bpmn-elements';
import { Engine } from 'bpmn-engine';
import Serializer, { TypeResolver } from 'moddle-context-serializer';

const VERSION = JSON.parse(
  fs.readFileSync(fileURLToPath(new URL('./node_modules/bpmn-engine/package.json', import.meta.url)), 'utf8')
).version;
const BPMN = fileURLToPath(new URL('../spiff/two_tasks.bpmn', import.meta.url));

async function loadSourceContext() {
  const moddleContext = await new BpmnModdle().fromXML(fs.readFileSync(BPMN, 'utf8'));
  if (moddleContext.warnings?.length) {
    throw new Error(`BPMN warnings: ${moddleContext.warnings.map((w) => w.message).join('; ')}`);
  }
  return Serializer(moddleContext, TypeResolver(elements));
}

// The documented way to keep a user task's signalled data: copy each
// activity's output into the execution's environment output.
const listener = new EventEmitter();
listener.on('activity.end', (elementApi, engineApi) => {
  if (elementApi.content.output) engineApi.environment.output[elementApi.id] = elementApi.content.output;
});

function signalWaiting(execution, id, data) {
  const postponed = execution.getPostponed().map((a) => a.id);
  if (postponed.length !== 1 || postponed[0] !== id) {
    throw new Error(`expected user task ${id} waiting, got [${postponed}]`);
  }
  execution.signal({ id, ...data });
}

async function lifecycle(sourceContext, i) {
  const engine = new Engine({ name: `lifecycle-${i}`, sourceContext });
  const ended = engine.waitFor('end');
  const execution = await engine.execute({ listener });
  signalWaiting(execution, 'task_a', { a_done: true });
  signalWaiting(execution, 'task_b', { b_done: true });
  const api = await ended;
  const out = api.environment.output;
  if (out.task_a?.a_done !== true || out.task_b?.b_done !== true) {
    throw new Error(`completion variables missing: ${JSON.stringify(out)}`);
  }
  if (execution.isRunning || execution.getPostponed().length !== 0) {
    throw new Error(`instance did not reach its end (state ${execution.state})`);
  }
}

async function main() {
  const n = Number.parseInt(process.env.PEER_N ?? '2000', 10);
  if (!(n > 0)) throw new Error(`bad PEER_N: ${process.env.PEER_N}`);
  const sourceContext = await loadSourceContext();

  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await lifecycle(sourceContext, i);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;

  console.log(`peer=bpmn-engine version=${VERSION} lifecycles=${n} seconds=${secs.toFixed(3)} rate=${Math.floor(n / secs)}`);
}

main().catch((err) => {
  if (err?.stack) console.error(err.stack);
  console.error(`bpmn-engine peer failed: ${err?.message ?? err}`);
  process.exit(1);
});
