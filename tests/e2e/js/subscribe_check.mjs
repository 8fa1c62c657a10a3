// The published @1backend/client's last two calls, unmodified: promptTypes and
// subscribeToPromptResponses (Server-Sent Events; the client awaits the whole body).
// Usage: PROMPTSVC_URL=http://127.0.0.1:8080 PROMPTSVC_KEY=... node subscribe_check.mjs
// Prints one JSON object with what it saw; test_js_client.py asserts on it.
import { Configuration, PromptSvcApi, ResponseError } from "@1backend/client";

const api = new PromptSvcApi(
  new Configuration({ basePath: process.env.PROMPTSVC_URL, apiKey: `Bearer ${process.env.PROMPTSVC_KEY}` }),
);
const seen = {};

// The generated model keeps only `chunk` (a type export); the raw answer has the service's lists.
seen.types = await api.promptTypes({ body: {} });
seen.typesBody = await (await api.promptTypesRaw({ body: {} })).raw.json();

// Subscribe to a thread that does not exist yet, then prompt on it: the subscription's body (what
// the client resolves with) is that prompt's chunks, ending with its done chunk.
const threadId = `js-sse-${Date.now()}`;
const started = Date.now();
const subscription = api.subscribeToPromptResponses({ threadId });
await new Promise((resolve) => setTimeout(resolve, 500)); // the subscription is open before the prompt
const added = await api.prompt({ body: { prompt: "Stream me a banana, please.", threadId } });
const body = await subscription;
seen.promptId = added.prompt.id;
seen.seconds = (Date.now() - started) / 1000;
seen.body = body;
seen.events = body
  .split("\n\n")
  .filter((block) => block.trim())
  .map((block) => {
    const fields = Object.fromEntries(
      block.split("\n").map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]),
    );
    return { id: Number(fields.id), data: JSON.parse(fields.data) };
  });

try {
  await api.subscribeToPromptResponses({ threadId: "x".repeat(200) });
  seen.badThread = "accepted";
} catch (e) {
  seen.badThread = e instanceof ResponseError ? { status: e.response.status, body: await e.response.json() } : String(e);
}
console.log(JSON.stringify(seen));
