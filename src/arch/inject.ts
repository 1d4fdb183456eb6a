/**
 * The bug-injection switchboard: the closed set of known bugs the fuzzer and the tests can plant in the model, and
 * the one currently selected. Each injection point elsewhere is a one-line `if (injected(Bug.X))` that reproduces a
 * real class of pKVM bug from reference pkvm.md §9 (or a review point of §2), so that the checkers — the ghost-state
 * invariants, the isolation oracles of `check/fuzz/` and the break-before-make checker of `mmu/` — are shown to fail
 * when the model is wrong (issue 4 §2).
 *
 * It lives in `arch/` and imports nothing, because every layer (pgtable/, el2/, mmu/) may import `arch/` and none may
 * import `check/` (DESIGN.md §2). With no bug selected (the default, and always in production use) every injection
 * point is a comparison of two small integers.
 */

/** The known bugs. Values are the names `--inject` accepts. */
export const Bug = {
  /** No bug planted. */
  NONE: 'none',
  /**
   * A valid stage-2 entry is removed (unmap, or replaced by an owner annotation when a page leaves the host) without
   * the TLBI for it: `stage2_try_break_pte()` / `stage2_unmap_put_pte()` skip `kvm_tlb_flush_vmid_ipa()`
   * (arch/arm64/kvm/hyp/pgtable.c). pkvm.md §9.8.
   */
  MISSING_TLBI_UNMAP: 'missing-tlbi-unmap',
  /**
   * Break-before-make without the break: a valid entry is overwritten by another valid one (a block split into a
   * table) with no invalid entry and no TLBI in between (`stage2_try_break_pte()` returns without breaking).
   * Arm ARM D8.16.1.
   */
  SKIP_BBM_BREAK: 'skip-bbm-break',
  /**
   * A host→guest share does not check the completer: `__pkvm_host_share_guest()` / `__pkvm_host_donate_guest()`
   * skip the guest-NOPAGE check (mem_protect.c `__guest_check_page_state_range`), so a second page can be mapped
   * over an IPA that is already mapped. pkvm.md §2.1, §9.1.
   */
  SHARE_NO_COMPLETER_CHECK: 'share-no-completer-check',
  /**
   * `__pkvm_host_reclaim_page()` returns a guest-owned page to the host without zeroing it (NEED_POISONING ignored).
   * pkvm.md §2.5, §9.7.
   */
  RECLAIM_NO_POISON: 'reclaim-no-poison',
  /**
   * `stage2_pte_is_counted()` counts only valid entries, not owner annotations, so table pages holding ownership
   * information are under-referenced (and can be freed). pkvm.md §7.6, §9.17.
   */
  REFCOUNT_IGNORES_ANNOTATIONS: 'refcount-ignores-annotations',
  /**
   * Memcache admission without the ownership check: `refill_memcache()` pushes the host's pages into the vCPU's hyp
   * memcache without the host→hyp donation, so a page the host does not own (or keeps) becomes a table page.
   * pkvm.md §5.3, §9.4.
   */
  MEMCACHE_NO_OWNERSHIP_CHECK: 'memcache-no-ownership-check',
  /**
   * A handler mutates state before failing: `__pkvm_host_share_hyp()` marks the host page SHARED_OWNED before its
   * state checks, and a refused call leaves the change behind (check-then-apply violated; pkvm.md §2.1).
   */
  MUTATE_BEFORE_FAIL: 'mutate-before-fail',
} as const;
/** A known bug (or {@link Bug.NONE}). */
export type Bug = (typeof Bug)[keyof typeof Bug];

/** Every injectable bug, in documentation order (without {@link Bug.NONE}). */
export const BUG_KINDS: readonly Exclude<Bug, 'none'>[] = [
  Bug.MISSING_TLBI_UNMAP,
  Bug.SKIP_BBM_BREAK,
  Bug.SHARE_NO_COMPLETER_CHECK,
  Bug.RECLAIM_NO_POISON,
  Bug.REFCOUNT_IGNORES_ANNOTATIONS,
  Bug.MEMCACHE_NO_OWNERSHIP_CHECK,
  Bug.MUTATE_BEFORE_FAIL,
];

let current: Bug = Bug.NONE;

/** True when `bug` is the planted bug. The injection points' only call; cheap enough for hot paths. */
export function injected(bug: Bug): boolean {
  return current === bug;
}

/** The planted bug ({@link Bug.NONE} when none). */
export function injectedBug(): Bug {
  return current;
}

/**
 * Plants `bug` (or removes the planted one with {@link Bug.NONE}) and returns the previous selection, so callers can
 * restore it: `const prev = setInjectedBug(b); try { … } finally { setInjectedBug(prev); }`.
 */
export function setInjectedBug(bug: Bug): Bug {
  const prev = current;
  current = bug;
  return prev;
}

/** The bug named `name` (as `--inject` spells it), or null for an unknown name. */
export function parseBug(name: string): Bug | null {
  for (const k of Object.keys(Bug) as (keyof typeof Bug)[]) if (Bug[k] === name) return Bug[k];
  return null;
}
