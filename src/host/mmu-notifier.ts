/**
 * MMU-notifier events the core mm raises on the VMM's address space (include/linux/mmu_notifier.h,
 * `mmu_notifier_invalidate_range_start()`), and the pKVM listener that records and ignores them: with guest
 * stage-2 at EL2 the host cannot unmap guest memory, so the long-term GUP pin is what keeps the mapping valid
 * (pkvm.md §6.4; V1 33/89 review: "we don't take any notice of the MMU notifiers at EL2").
 */

/** Why the core mm invalidates a range (`enum mmu_notifier_event` plus the caller that raised it). */
export const MmuNotifierEvent = {
  /** munmap / madvise(DONTNEED): `MMU_NOTIFY_UNMAP`. */
  UNMAP: 'unmap',
  /** Automatic NUMA balancing making PTEs PROT_NONE (`change_prot_numa()`): `MMU_NOTIFY_PROTECTION_VMA`. */
  NUMA_BALANCE: 'numa_balance',
  /** Compaction / migration unmapping a page to move it: `MMU_NOTIFY_MIGRATE`. */
  COMPACTION: 'compaction',
  /** KSM write-protecting a page before merging (`write_protect_page()`): `MMU_NOTIFY_CLEAR`. */
  KSM: 'ksm',
} as const;
/** An MMU-notifier event kind. */
export type MmuNotifierEvent = (typeof MmuNotifierEvent)[keyof typeof MmuNotifierEvent];

/** A subscriber to invalidations of the VMM's address space (`struct mmu_notifier_ops`). */
export interface MmuNotifier {
  /**
   * `invalidate_range_start`: the host mappings of [start, end) are about to change.
   * @param start first HVA, page aligned.
   * @param end HVA past the range.
   * @param event why.
   */
  invalidateRangeStart(start: number, end: number, event: MmuNotifierEvent): void;
}

/** The VM side of an upstream np-guest notifier: unshares what the host mapped in an HVA range. */
export interface NpGuestUnmapper {
  /** `kvm_unmap_gfn_range()` for the guest frames backed by [start, end). */
  unmapHvaRange(start: number, end: number): void;
}

/**
 * KVM's notifier for a pKVM VM: counts the events. Under the 2022 ABI it does nothing else, as V1's
 * `kvm_unmap_gfn_range()` and friends have no stage-2 to touch in protected mode (the guest stage-2 belongs to EL2).
 * Under upstream v6.14+ (np-guests, no long-term pin) every event unmaps the range from the guest first, as
 * `kvm_mmu_notifier_invalidate_range_start()` → `kvm_unmap_gfn_range()` → `pkvm_pgtable_stage2_unmap()` does
 * (arch/arm64/kvm/pkvm.c; pkvm.md §6.4).
 */
export class PkvmMmuNotifier implements MmuNotifier {
  /** Events received, by kind. */
  readonly counts: Record<MmuNotifierEvent, number> = { unmap: 0, numa_balance: 0, compaction: 0, ksm: 0 };
  /** Pages covered by the events received (sum of range lengths). */
  pages = 0;
  private readonly np: NpGuestUnmapper | null;

  /** @param np the VM to unmap from on each event (upstream np-guests), or null to ignore events (pkvm-2022). */
  constructor(np: NpGuestUnmapper | null = null) {
    this.np = np;
  }

  /** Records the event; pkvm-2022 ignores it (the guest stage-2 stays intact), upstream np-guests unmap the range. */
  invalidateRangeStart(start: number, end: number, event: MmuNotifierEvent): void {
    this.counts[event]++;
    this.pages += Math.ceil((end - start) / 4096);
    if (this.np !== null) this.np.unmapHvaRange(start, end);
  }
}
