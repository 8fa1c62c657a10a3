// Drives a running promptsvc with the published @1backend/client, unmodified.
// Usage: PROMPTSVC_URL=http://127.0.0.1:8080 PROMPTSVC_KEY=... node client_check.mjs
// Prints one JSON object with what it saw; the Python test asserts on it.
import { Configuration, PromptSvcApi, ResponseError } from "@1backend/client";

const api = new PromptSvcApi(
  new Configuration({ basePath: process.env.PROMPTSVC_URL, apiKey: `Bearer ${process.env.PROMPTSVC_KEY}` }),
);
const threadId = `js-${Date.now()}`;
const seen = {};

const sync = await api.prompt({
  body: {
    prompt: "What's a banana?",
    sync: true,
    threadId,
    parameters: { textToText: { template: "<js>{prompt}</js>" } },
  },
});
// This client version models no `answer`; JS callers read the answer from responseMessage.
seen.sync = { status: sync.prompt.status, message: sync.responseMessage?.text };

const added = [];
for (let i = 0; i < 3; i++) {
  const r = await api.prompt({ body: { prompt: `p${i}`, threadId } });
  added.push(r.prompt.id);
}
seen.added = added;

const listed = [];
let after;
for (let page = 0; page < 10; page++) {
  const rsp = await api.listPrompts({
    body: {
      query: {
        filters: [{ fields: ["threadId"], op: "equals", valuesJson: JSON.stringify([threadId]) }],
        limit: 2,
        count: true,
        ...(after ? { afterJson: JSON.stringify(after) } : {}),
      },
    },
  });
  seen.count = rsp.count;
  listed.push(...rsp.prompts.map((p) => p.id));
  after = rsp.after;
  if (!after) break;
}
seen.listed = listed;

await api.removePrompt({ body: { promptId: added[0] } });
const afterRemove = await api.listPrompts({
  body: { query: { filters: [{ fields: ["threadId"], op: "equals", valuesJson: JSON.stringify([threadId]) }] } },
});
seen.afterRemove = afterRemove.prompts.map((p) => p.id);

try {
  await api.prompt({ body: { prompt: "" } });
  seen.emptyPrompt = "accepted";
} catch (e) {
  seen.emptyPrompt = e instanceof ResponseError ? { status: e.response.status, body: await e.response.json() } : String(e);
}
console.log(JSON.stringify(seen));
