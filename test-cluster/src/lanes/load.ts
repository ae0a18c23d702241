// Continuous write load for the soak: one chainfire writer and one flaredb writer, each sending one
// write at a time to the members in turn and moving on to the next member when one fails. Only
// acknowledged writes are recorded; those are the ones that must never be lost.
import { KvClient, SqlClient } from "../clients.js";
import type { MemberDescriptor } from "../cluster.js";
import { delay } from "../poll.js";

export interface WriterStats {
  readonly acknowledged: number;
  readonly failedAttempts: number;
  /** Time of every acknowledgement (ms since epoch), for measuring gaps. */
  readonly ackTimes: number[];
}

abstract class Writer {
  private stopped = false;
  private loop: Promise<void> | undefined;
  readonly ackTimes: number[] = [];
  failedAttempts = 0;
  protected seq = 0;
  private next = 0;

  constructor(protected readonly members: readonly MemberDescriptor[]) {}

  protected abstract write(member: MemberDescriptor, seq: number): Promise<void>;
  protected abstract acknowledged(seq: number): void;

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const member = this.members[this.next % this.members.length]!;
      const seq = this.seq;
      try {
        await this.write(member, seq);
        this.acknowledged(seq);
        this.ackTimes.push(Date.now());
        this.seq++;
        // Rotate so that every member serves writes (followers forward them to the leader).
        this.next++;
      } catch {
        this.failedAttempts++;
        this.next++;
        // Back off briefly so a member that is down is not hammered; the write is retried with a
        // new sequence number, since the failed one may or may not have been applied.
        this.seq++;
        await delay(50);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Longest interval without an acknowledgement inside [from, to]. */
  maxGapMs(from: number, to: number): number {
    let last = from;
    let gap = 0;
    for (const t of this.ackTimes) {
      if (t < from) continue;
      if (t > to) break;
      gap = Math.max(gap, t - last);
      last = t;
    }
    return Math.max(gap, to - last);
  }

  /** Milliseconds from `from` until the first acknowledgement after it (undefined if none yet). */
  firstAckAfter(from: number): number | undefined {
    const t = this.ackTimes.find((x) => x >= from);
    return t === undefined ? undefined : t - from;
  }
}

export class ChainfireWriter extends Writer {
  readonly acked = new Map<string, string>();
  private readonly clients = new Map<string, KvClient>();

  constructor(
    members: readonly MemberDescriptor[],
    readonly prefix: string,
  ) {
    super(members);
  }

  private client(m: MemberDescriptor): KvClient {
    let c = this.clients.get(m.id);
    if (c === undefined) this.clients.set(m.id, (c = new KvClient(m.clientUrl)));
    return c;
  }

  protected async write(member: MemberDescriptor, seq: number): Promise<void> {
    await this.client(member).put(this.key(seq), `v${seq}`, 3000);
  }

  protected acknowledged(seq: number): void {
    this.acked.set(this.key(seq), `v${seq}`);
  }

  private key(seq: number): string {
    return `${this.prefix}${String(seq).padStart(8, "0")}`;
  }

  override async stop(): Promise<void> {
    await super.stop();
    for (const c of this.clients.values()) c.close();
  }
}

export class FlaredbWriter extends Writer {
  readonly acked = new Set<number>();
  private readonly clients = new Map<string, SqlClient>();

  constructor(
    members: readonly MemberDescriptor[],
    readonly table: string,
  ) {
    super(members);
  }

  private client(m: MemberDescriptor): SqlClient {
    let c = this.clients.get(m.id);
    if (c === undefined) this.clients.set(m.id, (c = new SqlClient(m.clientUrl)));
    return c;
  }

  protected async write(member: MemberDescriptor, seq: number): Promise<void> {
    await this.client(member).execute(`INSERT INTO ${this.table} (seq) VALUES (?)`, [BigInt(seq)], 3000);
  }

  protected acknowledged(seq: number): void {
    this.acked.add(seq);
  }

  override async stop(): Promise<void> {
    await super.stop();
    for (const c of this.clients.values()) c.close();
  }
}
