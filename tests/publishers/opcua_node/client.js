// Independent OPC UA client (node-opcua) for tests/publishers/test_opcua.py: a second implementation
// besides asyncua reads and subscribes to the daemon's verdict nodes. Prints one JSON object per line.
// usage: node client.js URL USER PASSWORD LINE CAMERA CHANGES
"use strict";
const {
  OPCUAClient, AttributeIds, TimestampsToReturn, UserTokenType, DataType, MessageSecurityMode, SecurityPolicy,
} = require("node-opcua-client");

const [url, user, password, line, camera, wanted] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));
const make = () => OPCUAClient.create({
  endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
  securityMode: MessageSecurityMode.None, securityPolicy: SecurityPolicy.None,
});

(async () => {
  const anon = make();
  await anon.connect(url);
  try {
    const s = await anon.createSession();
    out({ anonymous: "accepted" });
    await s.close();
  } catch (e) {
    out({ anonymous: "refused", error: String(e.message).split("\n")[0] });
  }
  await anon.disconnect();

  const client = make();
  await client.connect(url);
  const session = await client.createSession({ type: UserTokenType.UserName, userName: user, password });
  const ns = (await session.readNamespaceArray()).indexOf("urn:edge-inspector");
  const id = (name) => `ns=${ns};s=${line}.${camera}.${name}`;
  const sub = await session.createSubscription2({
    requestedPublishingInterval: 50, requestedLifetimeCount: 1000, requestedMaxKeepAliveCount: 20,
    maxNotificationsPerPublish: 100, publishingEnabled: true, priority: 1,
  });
  const item = await sub.monitor({ nodeId: id("Frame"), attributeId: AttributeIds.Value },
    { samplingInterval: 10, queueSize: 100, discardOldest: false }, TimestampsToReturn.Both);
  const changes = [];
  item.on("changed", (dv) => {
    if (dv.statusCode.isGood()) {
      changes.push(dv.value.value);
      out({ change: dv.value.value });
    }
  });
  out({ ready: true });
  const deadline = Date.now() + 30000;
  while (changes.length < Number(wanted) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const values = {};
  for (const name of ["Verdict", "Defect", "Score", "PartId", "Frame", "OkCount", "DefectCount"]) {
    const dv = await session.read({ nodeId: id(name), attributeId: AttributeIds.Value });
    values[name] = { value: dv.value.value, type: DataType[dv.value.dataType] };
  }
  out({ values, changes });
  await sub.terminate();
  await session.close();
  await client.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
