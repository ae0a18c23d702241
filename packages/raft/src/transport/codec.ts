// Conversions between the core's messages and their protobuf form. Every 64-bit field stays a
// bigint end to end; byte fields are wrapped (not copied) where possible.
import type {
  ConfState,
  Entry,
  EntryType,
  Message,
  MessageType,
  Snapshot,
  SnapshotDataFile,
} from "../core/types.js";
import type * as pb from "../gen/raft/v1/raft.js";

export function toBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function entryToProto(e: Entry): pb.Entry {
  return { term: e.term, index: e.index, type: e.type, data: toBuffer(e.data) };
}

export function entryFromProto(e: pb.Entry): Entry {
  return { term: e.term, index: e.index, type: e.type as EntryType, data: e.data };
}

export function confStateToProto(cs: ConfState): pb.ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}

export function confStateFromProto(cs: pb.ConfState | undefined): ConfState {
  return { voters: cs?.voters ?? [], learners: cs?.learners ?? [] };
}

/** The message without snapshot data (Snap messages carry metadata only; data goes in chunks). */
export function messageToProto(m: Message): pb.Message {
  const snap = m.snapshot;
  return {
    type: m.type,
    to: m.to,
    from: m.from,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map(entryToProto),
    commit: m.commit,
    snapshot:
      snap === null
        ? undefined
        : {
            index: snap.metadata.index,
            term: snap.metadata.term,
            confState: confStateToProto(snap.metadata.confState),
          },
    reject: m.reject,
    rejectHint: m.rejectHint,
    context: toBuffer(m.context),
  };
}

export function messageFromProto(
  m: pb.Message,
  snapshotData?: Uint8Array,
  snapshotFile?: SnapshotDataFile,
): Message {
  let snapshot: Snapshot | null = null;
  if (m.snapshot !== undefined) {
    snapshot = {
      metadata: {
        index: m.snapshot.index,
        term: m.snapshot.term,
        confState: confStateFromProto(m.snapshot.confState),
      },
      data: snapshotData ?? new Uint8Array(),
      ...(snapshotFile === undefined ? {} : { file: snapshotFile }),
    };
  }
  return {
    type: m.type as MessageType,
    to: m.to,
    from: m.from,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map(entryFromProto),
    commit: m.commit,
    snapshot,
    reject: m.reject,
    rejectHint: m.rejectHint,
    context: m.context,
  };
}
