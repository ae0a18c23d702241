// One line describing a replicated request, for the "apply request took too long" warning, in the
// manner of etcd's: keys quoted, values by their size only (a value may be a secret, and no value
// reaches a log), lease IDs in decimal.
import { type command, etcd } from "@photoncloud/chainfire-api";

const quoted = (bytes: Uint8Array) => JSON.stringify(Buffer.from(bytes).toString("utf8"));

const end = (rangeEnd: Uint8Array) => (rangeEnd.length > 0 ? ` range_end:${quoted(rangeEnd)}` : "");

/** The keys a range or a delete names. */
const keysText = (r: { key: Uint8Array; rangeEnd: Uint8Array }) => `key:${quoted(r.key)}${end(r.rangeEnd)}`;

function putText(p: etcd.PutRequest): string {
  const lease = p.lease !== 0n ? ` lease:${p.lease}` : "";
  return `key:${quoted(p.key)} value_size:${p.value.length}${lease}`;
}

function compareText(c: etcd.Compare): string {
  const target = etcd.Compare_CompareTarget[c.target] ?? String(c.target);
  const result = etcd.Compare_CompareResult[c.result] ?? String(c.result);
  return `compare:<target:${target} ${keysText(c)} result:${result}>`;
}

function opText(op: etcd.RequestOp): string {
  if (op.requestPut) return `request_put:<${putText(op.requestPut)}>`;
  if (op.requestDeleteRange) return `request_delete_range:<${keysText(op.requestDeleteRange)}>`;
  if (op.requestRange) return `request_range:<${keysText(op.requestRange)}>`;
  if (op.requestTxn) return `request_txn:<${txnText(op.requestTxn)}>`;
  return "<>";
}

function txnText(t: etcd.TxnRequest): string {
  const ops = (name: string, list: etcd.RequestOp[]) => list.map((op) => ` ${name}:<${opText(op)}>`).join("");
  return `${t.compare.map(compareText).join(" ")}${ops("success", t.success)}${ops("failure", t.failure)}`.trim();
}

export function requestText(cmd: command.MvccCommand): string {
  if (cmd.put) return `put:<${putText(cmd.put)}>`;
  if (cmd.deleteRange) return `delete_range:<${keysText(cmd.deleteRange)}>`;
  if (cmd.txn) return `txn:<${txnText(cmd.txn)}>`;
  if (cmd.compaction) return `compaction:<revision:${cmd.compaction.revision}>`;
  if (cmd.leaseGrant) return `lease_grant:<ttl:${cmd.leaseGrant.TTL}-second id:${cmd.leaseGrant.ID}>`;
  if (cmd.leaseRevoke) return `lease_revoke:<id:${cmd.leaseRevoke.ID}>`;
  if (cmd.leaseCheckpoint) return `lease_checkpoint:<checkpoints:${cmd.leaseCheckpoint.checkpoints.length}>`;
  if (cmd.leaseExpire) return `lease_expire:<ids:${cmd.leaseExpire.ids.join(",")}>`;
  if (cmd.alarm) {
    const action = etcd.AlarmRequest_AlarmAction[cmd.alarm.action] ?? String(cmd.alarm.action);
    const alarm = etcd.AlarmType[cmd.alarm.alarm] ?? String(cmd.alarm.alarm);
    return `alarm:<action:${action} memberID:${cmd.alarm.memberID} alarm:${alarm}>`;
  }
  return "<>";
}
