// kvm_stage2_levels / kvm_mmu_cache_min_pages / kvm_pgtable_stage2_pgd_size for 4 KiB pages (pkvm.md §5.2).
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { kvmMmuCacheMinPages, kvmStage2Levels, stage2PgdSize } from '../../src/host/stage2-geom.js';

t.test('levels, memcache minimum and pgd pages for every IPA size', async (t) => {
  // ipa → [levels, pgd pages]: start level 4 − levels; pgd = 2^(ipa − shift(start) − 9) pages, at least 1.
  const table: Record<number, [number, number]> = {
    32: [2, 4], 33: [2, 8], 34: [2, 16], 35: [3, 1], 36: [3, 1], 39: [3, 1], 40: [3, 2], 42: [3, 8], 43: [3, 16],
    44: [4, 1], 47: [4, 1], 48: [4, 1],
  };
  for (const [ipa, [levels, pages]] of Object.entries(table)) {
    t.equal(kvmStage2Levels(Number(ipa)), levels, `levels(${ipa})`);
    t.equal(kvmMmuCacheMinPages(Number(ipa)), levels - 1, `min pages(${ipa})`);
    t.equal(stage2PgdSize(Number(ipa)), pages * PAGE_SIZE, `pgd(${ipa})`);
  }
  t.throws(() => kvmStage2Levels(31));
  t.throws(() => kvmStage2Levels(49));
});
