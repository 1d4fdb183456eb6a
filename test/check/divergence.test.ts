// The documented QEMU-vs-Arm divergences explain only the mismatches they predict (docs/divergences.md).
import t from 'tap';
import { AT_DIRTY, DIVERGENCES, divergenceById, divergencesForTags, explainMemoryMismatch, explainMismatch, isAtDirtyWord, type MismatchInfo } from '../../src/check/divergence.js';

const okAt = { ok: true, pa: '0x50000000', par_el1: '0x50000b00' };
const translationL0 = { ok: false, 'fault.type': 'translation', 'fault.level': 0, 'fault.stage': 2 };
const permissionL3 = { ok: false, 'fault.type': 'permission', 'fault.level': 3, 'fault.stage': 2 };
const addrSizeL3 = { ok: false, 'fault.type': 'address_size', 'fault.level': 3, 'fault.stage': 2 };

function info(over: Partial<MismatchInfo>): MismatchInfo {
  return { tags: [], qemu: okAt, model: okAt, access: 'read', mode: 'at', leafMemAttr: null, fwb: false, beyondPaMax: false, ...over };
}

t.test('tag-gated divergences need their tag', async (t) => {
  const m = info({ qemu: translationL0, model: okAt });
  t.equal(explainMismatch(m), null, 'untagged case: a QEMU config fault is not explained');
  t.equal(explainMismatch({ ...m, tags: ['qemu72-faults-ipa-larger-than-ps'] })?.id, 'ipa-larger-than-ps');
  t.equal(explainMismatch({ ...m, tags: ['qemu-vs-arch-config:qemu72-4k-level0-vs-ps'] })?.id, 'start-level-vs-ps');
  t.equal(explainMismatch({ ...m, tags: ['contiguous-bit-sparse'] }), null, 'a tag with no divergence explains nothing');
});

t.test('a tag explains only the shape of mismatch it predicts', async (t) => {
  const tags = ['qemu72-faults-ipa-larger-than-ps'];
  t.equal(explainMismatch(info({ tags, qemu: okAt, model: translationL0 })), null, 'QEMU walked but the model faulted: not this divergence');
  const blk = ['qemu72-block-at-level-0-not-allowed'];
  t.equal(explainMismatch(info({ tags: blk, qemu: okAt, model: { ...translationL0 } }))?.id, 'block-level-not-allowed');
  t.equal(explainMismatch(info({ tags: blk, qemu: okAt, model: permissionL3 })), null);
  const oa = ['arch-diff:64k-desc[15:12]-oa[51:48]-with-ps<52'];
  t.equal(explainMismatch(info({ tags: oa, qemu: okAt, model: addrSizeL3 }))?.id, 'oa-high-bits-ps-below-52');
  t.equal(explainMismatch(info({ tags: oa, qemu: addrSizeL3, model: okAt })), null, 'the reverse direction is a bug');
});

t.test('instruction fetch from stage-2 Device: recognised from the leaf, without tags', async (t) => {
  const m = info({ mode: 'access', access: 'exec', qemu: { ok: true }, model: permissionL3, leafMemAttr: 0b0001 });
  t.equal(explainMismatch(m)?.id, 'ifetch-stage2-device');
  t.equal(explainMismatch({ ...m, leafMemAttr: 0b1111 }), null, 'a Normal leaf is not this divergence');
  t.equal(explainMismatch({ ...m, access: 'read' }), null, 'data accesses are not affected');
  t.equal(explainMismatch({ ...m, fwb: true, leafMemAttr: 0b0110 }), null, 'FWB 0b110 is Normal');
  t.equal(explainMismatch({ ...m, fwb: true, leafMemAttr: 0b0011 })?.id, 'ifetch-stage2-device', 'FWB 0b0xx is Device');
  const sea = { ok: false, 'fault.type': 'other', 'fault.stage': 1, 'fault.detail': 'sync_external_abort' };
  t.equal(explainMismatch({ ...m, qemu: sea })?.id, 'ifetch-stage2-device', 'QEMU translated and then hit unbacked memory');
});

t.test('oracle reading of fetches beyond PAMax', async (t) => {
  const s1 = { ok: false, 'fault.type': 'address_size', 'fault.level': 0, 'fault.stage': 1 };
  const m = info({ mode: 'access', access: 'exec', qemu: { ok: true }, model: s1, beyondPaMax: true });
  t.equal(explainMismatch(m)?.id, 'oracle-exec-beyond-pamax');
  t.equal(explainMismatch({ ...m, beyondPaMax: false }), null);
});

t.test('AT dirty-state words and memory explanations', async (t) => {
  const dbm = 1n << 51n;
  const clean = dbm | 0x47fn; // AF=1, S2AP=01 (clean), page
  t.ok(isAtDirtyWord(clean, clean | 0x80n, true));
  t.notOk(isAtDirtyWord(clean, clean | 0x80n, false), 'only the leaf of a successful AT S12E1W');
  t.notOk(isAtDirtyWord(clean & ~dbm, (clean & ~dbm) | 0x80n, true), 'needs DBM');
  t.notOk(isAtDirtyWord(clean, clean | 0x80n | (1n << 55n), true), 'any other changed bit is not explained');
  t.equal(explainMemoryMismatch(new Set(['ipa-larger-than-ps']))?.id, 'ipa-larger-than-ps');
  t.equal(explainMemoryMismatch(new Set(['oracle-exec-beyond-pamax'])), null, 'that one changes no memory');
  t.equal(explainMemoryMismatch(new Set()), null);
});

t.test('registry', async (t) => {
  const ids = DIVERGENCES.map((d) => d.id);
  t.equal(new Set(ids).size, ids.length, 'ids are unique');
  for (const d of [...DIVERGENCES, AT_DIRTY]) {
    t.ok(d.armRule.length > 20 && d.qemu.length > 10, `${d.id} documents its rule and QEMU's behaviour`);
    t.equal(divergenceById(d.id), d);
  }
  t.equal(divergenceById('nope'), null);
  t.same(divergencesForTags(['qemu72-block-at-level-1-not-allowed']).map((d) => d.id), ['block-level-not-allowed']);
});
