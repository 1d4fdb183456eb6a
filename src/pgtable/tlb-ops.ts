/**
 * The TLB-maintenance interface the page-table library is given (DESIGN.md §2: pgtable/ reaches the TLB only
 * through an injected interface), and the hypervisor's flush sequences built on it, mirroring
 * arch/arm64/kvm/hyp/nvhe/tlb.c (`__kvm_tlb_flush_vmid_ipa`, `__kvm_tlb_flush_vmid_ipa_nsh`,
 * `__kvm_tlb_flush_vmid`) and `kvm_tlb_flush_vmid_range()` (arch/arm64/kvm/hyp/pgtable.c) on a CPU without
 * FEAT_TLBIRANGE. Arm ARM rules: reference arm-s2.md §8.1–8.3.
 */

/**
 * Stage-2 TLB maintenance as executed at EL2 for one VMID. The MMU model's `Tlb` (`src/mmu/tlb.ts`) implements
 * exactly these names. `level` is the TTL hint (0..3), or {@link TLBI_TTL_UNKNOWN} for "no hint".
 */
export interface TlbMaintenance {
  /** TLBI IPAS2E1IS: stage-2-only entries for `ipa`, all levels, broadcast. */
  ipas2e1is(vmid: number, ipa: number, level: number): void;
  /** TLBI IPAS2LE1IS: as IPAS2E1IS, last-level entries only. */
  ipas2le1is(vmid: number, ipa: number, level: number): void;
  /** TLBI VMALLS12E1IS: all stage-1 and stage-2 entries of the VMID. */
  vmalls12e1is(vmid: number): void;
  /** TLBI VMALLE1IS: all stage-1 (incl. combined S1+S2) entries of the VMID. */
  vmalle1is(vmid: number): void;
  /** DSB (ISH/ISHST): completes the preceding maintenance. */
  dsb(): void;
  /** ISB. */
  isb(): void;
}

/**
 * EL2 stage-1 TLB maintenance for the hypervisor's own table (`kvm_pgtable_hyp_unmap`): TLBI VAE2IS / VALE2IS.
 * Optional: a hyp table built without one performs no invalidation.
 */
export interface HypTlbMaintenance {
  /** TLBI VAE2IS: EL2 entries for `va`, all levels. */
  vae2is(va: number, level: number): void;
  /** TLBI VALE2IS: EL2 last-level entries for `va`. */
  vale2is(va: number, level: number): void;
  /** DSB ISH. */
  dsb(): void;
  /** ISB. */
  isb(): void;
}

/** `TLBI_TTL_UNKNOWN` (arch/arm64/include/asm/tlbflush.h): "no level hint" (INT_MAX). */
export const TLBI_TTL_UNKNOWN = 0x7fff_ffff;

/**
 * Invalidates one IPA of a VMID, stage 2 then stage 1:
 * DSB ISHST; TLBI IPAS2E1IS, ipa (level hint); DSB ISH; TLBI VMALLE1IS; DSB ISH; ISB.
 * The stage-2 invalidation must complete before the stage-1 one, or another CPU could refill a combined S1+S2
 * entry from the old stage-2 mapping (comment in tlb.c).
 *
 * @remarks Mirrors `__kvm_tlb_flush_vmid_ipa()` (arch/arm64/kvm/hyp/nvhe/tlb.c). The VTTBR switch
 * (`enter_vmid_context`) is implicit: every operation names the VMID.
 */
export function kvmTlbFlushVmidIpa(tlb: TlbMaintenance, vmid: number, ipa: number, level: number): void {
  tlb.dsb();
  tlb.ipas2e1is(vmid, ipa, level);
  tlb.dsb();
  tlb.vmalle1is(vmid);
  tlb.dsb();
  tlb.isb();
}

/**
 * The local variant used after relaxing permissions. The kernel issues the non-broadcast TLBI IPAS2E1 and
 * VMALLE1 with DSB NSH; the interface only has the broadcast forms, which invalidate a superset (always legal,
 * arm-s2.md §8.1), so this issues the same sequence as {@link kvmTlbFlushVmidIpa}.
 *
 * @remarks Mirrors `__kvm_tlb_flush_vmid_ipa_nsh()` (arch/arm64/kvm/hyp/nvhe/tlb.c).
 */
export function kvmTlbFlushVmidIpaNsh(tlb: TlbMaintenance, vmid: number, ipa: number, level: number): void {
  kvmTlbFlushVmidIpa(tlb, vmid, ipa, level);
}

/**
 * Invalidates every stage-1 and stage-2 entry of a VMID: DSB ISHST; TLBI VMALLS12E1IS; DSB ISH; ISB.
 *
 * @remarks Mirrors `__kvm_tlb_flush_vmid()` (arch/arm64/kvm/hyp/nvhe/tlb.c).
 */
export function kvmTlbFlushVmid(tlb: TlbMaintenance, vmid: number): void {
  tlb.dsb();
  tlb.vmalls12e1is(vmid);
  tlb.dsb();
  tlb.isb();
}

/**
 * Invalidates an IPA range of a VMID. Without FEAT_TLBIRANGE (the modelled CPU) this is a whole-VMID flush.
 *
 * @remarks Mirrors `kvm_tlb_flush_vmid_range()` (arch/arm64/kvm/hyp/pgtable.c) with
 * `system_supports_tlb_range()` false.
 */
export function kvmTlbFlushVmidRange(tlb: TlbMaintenance, vmid: number, _addr: number, _size: number): void {
  kvmTlbFlushVmid(tlb, vmid);
}
