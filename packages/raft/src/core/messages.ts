// Message construction with defaults, so call sites name only the fields that matter.
import { type Message, type MessageType, NONE } from "./types.js";

export const EMPTY_BYTES = new Uint8Array(0);

/** Context of a Vote sent because of a leadership transfer: it bypasses the voters' leader lease. */
export const CAMPAIGN_TRANSFER = new TextEncoder().encode("CampaignTransfer");

export type MessageFields = Partial<Message> & { readonly type: MessageType };

export function makeMessage(fields: MessageFields): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0n,
    logTerm: 0n,
    index: 0n,
    entries: [],
    commit: 0n,
    snapshot: null,
    reject: false,
    rejectHint: 0n,
    context: EMPTY_BYTES,
    ...fields,
  };
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
