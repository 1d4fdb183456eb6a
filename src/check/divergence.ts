/**
 * The documented differences between QEMU 7.2 (the oracle) and the Arm architecture that s2emu follows instead
 * (DESIGN.md §5; reference arm-s2.md §11; `../shared/oracle/README.md` "QEMU 7.2 behaviour that differs"), and the
 * predicate that decides whether a mismatch on a tagged fixture case is one of them. `docs/divergences.md` explains
 * each entry with its Arm rule; `fixtures/arch/` holds the Arm side of each, and the QEMU side is the recorded
 * `fixtures/qemu-divergent/` case.
 *
 * A divergence explains a query's mismatch only when (1) the case carries one of its generator tags (`gen.tags`), for
 * the entries the generator tags, and (2) the model's and QEMU's answers have the shape the divergence predicts (for
 * example: QEMU rejected the configuration with a level-0 translation fault, and the model walked). A few
 * differences are not tagged by the generator (instruction fetch from stage-2 Device memory, AT's dirty-state
 * update, an oracle misreading of fetches beyond PAMax); their predicates recognise them from the query itself (the
 * leaf's memory type, the access, the changed bits). Anything else fails.
 */

/** The outcome of one query, flattened as in fixture `expect` entries (`ok`, `fault.type`, `fault.level`, …). */
export type Outcome = Readonly<Record<string, string | number | boolean | null>>;

/** Everything a divergence predicate may look at for one mismatching query. */
export interface MismatchInfo {
  /** The case's `gen.tags`. */
  readonly tags: readonly string[];
  /** The recorded (QEMU) expectation. */
  readonly qemu: Outcome;
  /** The model's answer. */
  readonly model: Outcome;
  readonly access: 'read' | 'write' | 'exec';
  readonly mode: 'at' | 'access';
  /** MemAttr[3:0] of the leaf the model's walk reached, or null when it reached none. */
  readonly leafMemAttr: number | null;
  /** HCR_EL2.FWB in effect. */
  readonly fwb: boolean;
  /** The IPA is at or above 2^PAMax (stage 1, which is off, rejects it). */
  readonly beyondPaMax: boolean;
}

/** A documented QEMU-vs-Arm difference. */
export interface Divergence {
  /** Stable identifier, used in reports and in docs/divergences.md. */
  readonly id: string;
  /** One-line description. */
  readonly title: string;
  /** The Arm rule s2emu follows (ASL function or Arm ARM rule). */
  readonly armRule: string;
  /** What QEMU 7.2 (or the oracle harness reading it) does instead. */
  readonly qemu: string;
  /**
   * Generator tags (exact, or patterns with one `*`) that mark cases exhibiting it. Empty: the difference is not
   * tagged by the generator and the predicate recognises it from the query alone.
   */
  readonly tags: readonly string[];
  /** Whether the model's hardware AF/dirty updates may differ on such a case (`memory_after`). */
  readonly affectsMemory: boolean;
  /** True when the mismatch is the difference this entry predicts. */
  readonly explains: (m: MismatchInfo) => boolean;
}

function isFault(o: Outcome, type: string, level?: number): boolean {
  return o['ok'] === false && o['fault.type'] === type && (level === undefined || o['fault.level'] === level);
}

/** QEMU refused the configuration (a level-0 translation fault) where Arm walks: any model answer is then possible. */
function qemuRejectedConfig(m: MismatchInfo): boolean {
  return isFault(m.qemu, 'translation', 0) && !isFault(m.model, 'translation', 0);
}

/**
 * QEMU's stage-2 translation succeeded: the access completed, or the access itself then took a synchronous External
 * abort at EL1 (its output address is unbacked).
 */
function qemuTranslated(q: Outcome): boolean {
  return q['ok'] === true || (q['ok'] === false && q['fault.stage'] === 1 && q['fault.detail'] === 'sync_external_abort');
}

/** Stage-2 Device memory type (FWB: MemAttr[2] = 0; otherwise MemAttr[3:2] = 0b00), as the walker decides it. */
function isDevice(memAttr: number, fwb: boolean): boolean {
  return fwb ? (memAttr & 0b100) === 0 : (memAttr & 0b1100) === 0;
}

/** The divergences, in the order of docs/divergences.md. */
export const DIVERGENCES: readonly Divergence[] = [
  {
    id: 'block-level-not-allowed',
    title: 'block descriptor at a level where blocks are not allowed',
    armRule:
      'Arm ARM D8.3 / ASL AArch64.BlockDescSupported + DecodeDescriptorType: a block (bits[1:0]=0b01) at 4K level 0 without DS or 16K level 1 without DS is a Translation fault at that level',
    qemu: 'accepts the descriptor as a block (4K level 0 maps 512 GiB, 16K level 1 maps 64 GiB)',
    tags: ['qemu72-block-at-level-*-not-allowed'],
    affectsMemory: true,
    explains: (m) => isFault(m.model, 'translation') && !isFault(m.qemu, 'translation', m.model['fault.level'] as number),
  },
  {
    id: 'start-level-vs-ps',
    title: 'start-level validity checked against VTCR_EL2.PS instead of PAMax',
    armRule:
      'ASL AArch64.S2InvalidSL: a level-0 start (4K) or level-1 start (16K/64K) is invalid only when PAMax is too small; the configured PS plays no part',
    qemu: 'level-0 Translation fault when PS ≤ 42 bits (4K L0), ≤ 40 bits (16K L1) or ≤ 42 bits (64K L1)',
    tags: ['qemu72-start-level-checked-against-ps', 'qemu-vs-arch-config:qemu72-4k-level0-vs-ps', 'qemu-vs-arch-config:qemu72-16k-start-level-vs-ps', 'qemu-vs-arch-config:qemu72-64k-start-level-vs-ps'],
    affectsMemory: true,
    explains: qemuRejectedConfig,
  },
  {
    id: 'ipa-larger-than-ps',
    title: 'IPA size larger than the PS size',
    armRule:
      'ASL AArch64.S2InvalidSL / AArch64.S2InconsistentSL: no check of the input size against PS; a walk with IAS > OAS is valid',
    qemu: 'level-0 Translation fault for every access (a CONSTRAINED UNPREDICTABLE choice QEMU documents in check_s2_mmu_setup)',
    tags: ['qemu72-faults-ipa-larger-than-ps', 'qemu-vs-arch-config:qemu72-ipa-larger-than-ps'],
    affectsMemory: true,
    explains: qemuRejectedConfig,
  },
  {
    id: 'lpa2-start-level',
    title: 'FEAT_LPA2 start levels: 16K level 0, 4K level -1',
    armRule:
      'ASL AArch64.S2InvalidSL: with DS=1, 16K SL0=0b11 (level 0) and 4K SL2=1 (level -1) are valid for any IAS that is consistent with the start level (AArch64.S2InconsistentSL), e.g. 49-52 bits for level -1',
    qemu: 'rejects 16K level-0 start, and accepts a level -1 start only for a 52-bit IPA (level-0 Translation fault)',
    tags: ['qemu72-rejects-16k-level0-start', 'qemu-vs-arch-config:qemu72-level-minus1-needs-52bit-ipa', 'unexpected-invalid:qemu72-level-minus1-needs-52bit-ipa'],
    affectsMemory: true,
    explains: qemuRejectedConfig,
  },
  {
    id: 'oa-high-bits-ps-below-52',
    title: 'OA[51:48] (64K desc[15:12]) and OA[51:50] (DS desc[9:8]) ignored when PS < 52',
    armRule:
      'ASL AArch64.S2OutputAddress / AArch64.OAOutOfRange: those descriptor bits are part of the output (or next-table) address whenever the format has them, so a non-zero value beyond the configured OAS is an Address size fault',
    qemu: 'masks the bits away when PS < 52 and translates',
    tags: ['arch-diff:64k-desc[15:12]-oa[51:48]-with-ps<52', 'arch-diff:ds-desc[9:8]-oa[51:50]-with-ps<52'],
    affectsMemory: true,
    explains: (m) => isFault(m.model, 'address_size') && !isFault(m.qemu, 'address_size'),
  },
  {
    id: 'ifetch-stage2-device',
    title: 'instruction fetch from stage-2 Device memory',
    armRule:
      'ASL AArch64.S2Translate: an instruction fetch from memory that stage 2 makes Device (and not execute-never) is CONSTRAINED UNPREDICTABLE (Unpredictable_INSTRDEVICE): a stage-2 Permission fault or a Normal Non-cacheable fetch; s2emu takes the Permission fault (arm-s2.md §11 #6)',
    qemu: 'ignores MemAttr for permissions and fetches (and sets the AF with HA)',
    tags: [],
    affectsMemory: true,
    explains: (m) =>
      m.mode === 'access' && m.access === 'exec' && qemuTranslated(m.qemu) && isFault(m.model, 'permission') && m.leafMemAttr !== null && isDevice(m.leafMemAttr, m.fwb),
  },
  {
    id: 'oracle-exec-beyond-pamax',
    title: 'instruction fetch from an address at or above 2^PAMax with EL1 stage 1 off (oracle reading)',
    armRule:
      'ASL AArch64.S1DisabledOutput: with stage 1 disabled, a VA with a bit set in [55:PAMax] is a stage-1 Address size fault, level 0, taken to EL1 (ESR_EL1.EC = 0x21, IFSC = 0b000000)',
    qemu: 'QEMU takes that EL1 fault; the oracle then sees the EL1 vector fetch fault at stage 2 and records the target fetch as successful ("target fetched (EL1 vector fetch faulted afterwards)")',
    tags: [],
    affectsMemory: false,
    explains: (m) => m.mode === 'access' && m.access === 'exec' && m.beyondPaMax && m.qemu['ok'] === true && isFault(m.model, 'address_size', 0) && m.model['fault.stage'] === 1,
  },
];

/**
 * The AT dirty-state difference, which shows only in `memory_after`: QEMU 7.2 sets S2AP[1] of a DBM=1 leaf on a
 * successful `AT S12E1W` with HA=HD=1; Arm does not (ASL AArch64.S2Translate excludes AccessType_AT from the
 * dirty-state update; arm-s2.md §7.2, §11 #7).
 */
export const AT_DIRTY: Divergence = {
  id: 'at-dirty-state',
  title: 'AT S12E1W sets the dirty state of a DBM page',
  armRule:
    'ASL AArch64.S2Translate / AArch64.SetDirtyState: the dirty state (S2AP[1]) is updated only for a write access that is not AccessType_AT, DC or IC; AT S12E1W checks write permission (DBM makes the page writable) but writes nothing',
  qemu: 'sets S2AP[1] on AT S12E1W exactly as on a store',
  tags: [],
  affectsMemory: true,
  explains: () => false,
};

/** bit[7] S2AP[1] and bit[51] DBM of a descriptor, as BigInt masks for memory words (edges only). */
const S2AP_W_BIT = 1n << 7n;
const DBM_BIT = 1n << 51n;

/**
 * Whether one differing `memory_after` word is the AT dirty-state difference: the recorded value is the model's
 * value with S2AP[1] set, the word is a DBM=1 leaf, and an `AT S12E1W` of the case succeeded through it.
 *
 * @param modelValue the model's final value of the word
 * @param qemuValue the recorded final value
 * @param atWriteLeaf the word was the leaf of a successful AT S12E1W in this case
 */
export function isAtDirtyWord(modelValue: bigint, qemuValue: bigint, atWriteLeaf: boolean): boolean {
  return atWriteLeaf && (modelValue & DBM_BIT) !== 0n && (modelValue & S2AP_W_BIT) === 0n && qemuValue === (modelValue | S2AP_W_BIT);
}

function tagMatches(pattern: string, tag: string): boolean {
  if (!pattern.includes('*')) return pattern === tag;
  const [pre, post] = pattern.split('*', 2) as [string, string]; // JUSTIFY: split on a present '*' has ≥ 2 parts.
  return tag.length >= pre.length + post.length && tag.startsWith(pre) && tag.endsWith(post);
}

/** The divergences a case's tags arm. */
export function divergencesForTags(tags: readonly string[]): Divergence[] {
  return DIVERGENCES.filter((d) => d.tags.some((p) => tags.some((t) => tagMatches(p, t))));
}

/**
 * The documented divergence that explains a query mismatch on a case with these tags, or null when none does
 * (then the mismatch is a failure).
 *
 * Tag-gated entries apply only to cases with one of their tags; untagged entries apply to every case.
 */
export function explainMismatch(m: MismatchInfo): Divergence | null {
  for (const d of DIVERGENCES) {
    const armed = d.tags.length === 0 || d.tags.some((p) => m.tags.some((t) => tagMatches(p, t)));
    if (armed && d.explains(m)) return d;
  }
  return null;
}

/**
 * The divergence that explains a `memory_after` mismatch: one that allows different hardware updates and already
 * explained a query of the same case (a walk QEMU did not make, or made differently, updates different words).
 */
export function explainMemoryMismatch(explainedIds: ReadonlySet<string>): Divergence | null {
  for (const d of DIVERGENCES) if (d.affectsMemory && explainedIds.has(d.id)) return d;
  return null;
}

/** Looks a divergence up by id. */
export function divergenceById(id: string): Divergence | null {
  if (id === AT_DIRTY.id) return AT_DIRTY;
  return DIVERGENCES.find((d) => d.id === id) ?? null;
}
