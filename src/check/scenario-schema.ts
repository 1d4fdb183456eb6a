/**
 * The scenario format: its JSON Schema (the same document as `fixtures/scenario.schema.json`, which a test keeps
 * identical) and the parser from validated JSON to typed {@link Scenario} steps.
 *
 * A scenario is a machine description plus an ordered list of steps; each step is an object whose first key names
 * its kind, with an optional `expect`. Numbers that may exceed 2^53 (hypercall arguments and register values) are
 * hex strings; sizes may also be written `64M`, `4K`, `1G`; errno values are names (`"-EPERM"`); SMCCC statuses are
 * `SUCCESS` / `NOT_SUPPORTED` / `NOT_REQUIRED` / `INVALID_PARAMETER`. Input errors are values (`{ ok: false }`) that
 * name the file, the JSON path and what was expected (DESIGN.md §4); nothing here throws on user input.
 */

import { parseHex64 } from '../arch/bits.js';
import { parseErrno } from '../arch/errno.js';
import { SmcccRet } from '../arch/smccc.js';
import { formatPath, validateJson, type Issue, type SchemaNode } from './json-path.js';

const HEX = '^0x[0-9a-fA-F]+(_[0-9a-fA-F]+)*$';
const SIZE = '^(0x[0-9a-fA-F]+(_[0-9a-fA-F]+)*|[0-9]+[KMG]?)$';
const ERRNO = '^(0|-?E[A-Z0-9]+|-?[0-9]+)$';

const u53: SchemaNode = {
  description: 'a hex string like "0x40000000" or a non-negative integer',
  anyOf: [
    { type: 'string', pattern: HEX },
    { type: 'integer', minimum: 0 },
  ],
};
const size: SchemaNode = {
  description: 'a size: a hex string, a non-negative integer, or a number with a K/M/G suffix like "64M"',
  anyOf: [
    { type: 'string', pattern: SIZE },
    { type: 'integer', minimum: 0 },
  ],
};
const reg: SchemaNode = {
  description:
    'a register value: an SMCCC status ("SUCCESS", "NOT_SUPPORTED", "NOT_REQUIRED", "INVALID_PARAMETER"), an errno name like "-EPERM", a hex string, or an integer',
  anyOf: [
    { type: 'string', enum: ['SUCCESS', 'NOT_SUPPORTED', 'NOT_REQUIRED', 'INVALID_PARAMETER'] },
    { type: 'string', pattern: ERRNO },
    { type: 'string', pattern: HEX },
    { type: 'integer' },
  ],
};
const arg: SchemaNode = {
  description:
    'an argument: a hex string, a non-negative integer, "pfn:<hex PA>", "handle:<vm>", "kvm_pfn:<vm>" (pfn of the host struct kvm) or "vcpu_pfn:<vm>:<index>" (pfn of a host struct kvm_vcpu)',
  anyOf: [
    { type: 'string', pattern: HEX },
    { type: 'integer', minimum: 0 },
    { type: 'string', pattern: '^pfn:0x[0-9a-fA-F_]+$' },
    { type: 'string', pattern: '^(handle|kvm_pfn):.+$' },
    { type: 'string', pattern: '^vcpu_pfn:.+:[0-9]+$' },
  ],
};
const errno: SchemaNode = { type: 'string', pattern: ERRNO, description: 'an errno like "-EPERM" or "0"' };
const name: SchemaNode = { type: 'string', minLength: 1, description: 'a VM name' };
const small = (max: number): SchemaNode => ({ type: 'integer', minimum: 0, maximum: max });
const pageState: SchemaNode = { type: 'string', enum: ['OWNED', 'SHARED_OWNED', 'SHARED_BORROWED', 'NOPAGE'] };
const result3: SchemaNode = { type: 'string', enum: ['ok', 'error'] };
const regExpect: SchemaNode = {
  type: 'object',
  additionalProperties: false,
  properties: { x0: { $ref: '#/$defs/reg' }, x1: { $ref: '#/$defs/reg' }, x2: { $ref: '#/$defs/reg' }, x3: { $ref: '#/$defs/reg' } },
};
const okErrSchema: SchemaNode = {
  type: 'object',
  additionalProperties: false,
  properties: { result: result3, errno: { $ref: '#/$defs/errno' } },
};

/** What each step kind does; also the `description` of its schema node (editors show it). */
const STEP_DOC: Record<string, string> = {
  hvc: 'a raw host hypercall: {"hvc": kernel name or raw id, "cpu", "args": [...], "expect": {"x0"…"x3"}}',
  vm_create:
    'a VM created as a VMM and KVM do (mmap at backing_pa, KVM_CREATE_VM/VCPU, memslot, __pkvm_init_vm, __pkvm_init_vcpu): {"vm_create": name, "memory", "ipa_base", "backing_pa", "vcpus", "protected", "expect": {"result", "errno", "handle"}}',
  vm_destroy: 'a VM teardown (__pkvm_teardown_vm, then reclaim, unaccount and unpin every pinned page): {"vm_destroy": name, "expect"}',
  vcpu_load: 'kvm_arch_vcpu_load (__pkvm_vcpu_load): {"vcpu_load": name, "vcpu", "cpu"}',
  vcpu_put: 'kvm_arch_vcpu_put (__pkvm_vcpu_put) of the vCPU of that VM loaded on "cpu": {"vcpu_put": name, "cpu"}',
  memcache_topup: 'topup_hyp_memcache of a vCPU to "pages" pages: {"memcache_topup": name, "vcpu", "pages"}',
  guest_access:
    'a 64-bit guest load/store/fetch under KVM_RUN (exits handled and retried), or with "handle": false the first exit reported: {"guest_access": name, "vcpu", "ipa", "access", "value", "expect": {"result", "esr_el2", "hpfar_el2", "errno", "value", "exits"}}',
  handle_exit: 'the host handles the exit a "handle": false access reported (kvm_handle_guest_abort): {"handle_exit": name, "vcpu"}',
  guest_hvc: 'a guest service call (HYP_MEMINFO, MEM_SHARE, MEM_UNSHARE or a raw id) under KVM_RUN: {"guest_hvc": name, "vcpu", "fn", "args", "expect": {"x0"…}}',
  host_access: 'a host kernel 64-bit load/store through the host stage-2: {"host_access": PA, "cpu", "access", "value", "expect": {"result": "ok"|"abort", "value"}}',
  host_event: 'a core-mm event on guest memory (munmap, NUMA balancing, compaction): {"host_event": kind, "vm", "ipa", "pages", "expect": {"migrated", "guest_mapped"}}',
  expect_page: 'the views of one physical page: {"expect_page": PA, "host", "hyp", "guests": {name: state}, "pinned", "owner"}',
  expect_vm: 'a VM\'s bookkeeping: {"expect_vm": name, "exists", "handle", "pinned_pages", "locked_pages", "mapped_pages"}',
  set: 'machine knobs: {"set": {"memlock_limit", "host_alloc_limit", "check_invariants"}}',
  check_invariants: 'an explicit ghost-state invariant check: {"check_invariants": true}',
};

function step(kind: string, kindSchema: SchemaNode, props: Record<string, SchemaNode>, required: string[] = []): SchemaNode {
  return {
    description: STEP_DOC[kind],
    type: 'object',
    additionalProperties: false,
    required: [kind, ...required],
    properties: { [kind]: kindSchema, comment: { type: 'string' }, ...props },
  };
}

/**
 * The scenario JSON Schema (draft 2020-12). `fixtures/scenario.schema.json` holds the same document for editors and
 * other tools; `test/check/scenario-schema.test.ts` keeps the two identical.
 */
export const SCENARIO_SCHEMA: SchemaNode & { $schema: string; $id: string; title: string } = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://s2emu.dev/scenario.schema.json',
  title: 's2emu scenario',
  type: 'object',
  additionalProperties: false,
  required: ['machine', 'steps'],
  properties: {
    $schema: { type: 'string' },
    name: { type: 'string' },
    description: { type: 'string' },
    machine: { $ref: '#/$defs/machine' },
    steps: { type: 'array', items: { $ref: '#/$defs/step' } },
  },
  $defs: {
    u53,
    size,
    reg,
    arg,
    errno,
    machine: {
      type: 'object',
      additionalProperties: false,
      required: ['ram'],
      properties: {
        ram: {
          type: 'array',
          minItems: 1,
          maxItems: 16,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['base', 'size'],
            properties: { base: { $ref: '#/$defs/u53' }, size: { $ref: '#/$defs/size' } },
          },
        },
        cpus: { type: 'integer', minimum: 1, maximum: 64, description: 'an integer 1…64 (default 2)' },
        pa_bits: { type: 'integer', enum: [32, 36, 40, 42, 44, 48], description: 'a PARange size: 32, 36, 40, 42, 44 or 48 (default 40)' },
        profile: { type: 'string', minLength: 1, description: 'an ABI profile name (default "pkvm-2022")' },
        hyp_pool: {
          description:
            'the hypervisor carve-out {base, pages}; default: the host stage-2 worst case plus 1024 pages, at the top of the highest RAM region (system.ts defaultHypPool)',
          type: 'object',
          additionalProperties: false,
          required: ['base', 'pages'],
          properties: { base: { $ref: '#/$defs/u53' }, pages: { type: 'integer', minimum: 1, maximum: 1048576 } },
        },
        tlb: { type: 'boolean', description: 'true or false: the stage-2 TLB on (default) or off' },
      },
    },
    step: {
      description: 'a step object whose first key names its kind',
      oneOf: [
        { $ref: '#/$defs/step_hvc' },
        { $ref: '#/$defs/step_vm_create' },
        { $ref: '#/$defs/step_vm_destroy' },
        { $ref: '#/$defs/step_vcpu_load' },
        { $ref: '#/$defs/step_vcpu_put' },
        { $ref: '#/$defs/step_memcache_topup' },
        { $ref: '#/$defs/step_guest_access' },
        { $ref: '#/$defs/step_handle_exit' },
        { $ref: '#/$defs/step_guest_hvc' },
        { $ref: '#/$defs/step_host_access' },
        { $ref: '#/$defs/step_host_event' },
        { $ref: '#/$defs/step_expect_page' },
        { $ref: '#/$defs/step_expect_vm' },
        { $ref: '#/$defs/step_set' },
        { $ref: '#/$defs/step_check_invariants' },
      ],
    },
    step_hvc: step(
      'hvc',
      { type: 'string', minLength: 1, description: 'a hypercall name like "__pkvm_host_share_hyp" or a raw id like "0xc600000d"' },
      { cpu: small(63), args: { type: 'array', maxItems: 7, items: { $ref: '#/$defs/arg' } }, expect: regExpect },
    ),
    step_vm_create: step(
      'vm_create',
      name,
      {
        memory: { $ref: '#/$defs/size' },
        ipa_base: { $ref: '#/$defs/u53' },
        backing_pa: { $ref: '#/$defs/u53' },
        vcpus: { type: 'integer', minimum: 1, maximum: 64 },
        protected: { type: 'boolean' },
        expect: {
          type: 'object',
          additionalProperties: false,
          properties: { result: result3, errno: { $ref: '#/$defs/errno' }, handle: { $ref: '#/$defs/u53' } },
        },
      },
      ['memory', 'backing_pa'],
    ),
    step_vm_destroy: step('vm_destroy', name, { expect: okErrSchema }),
    step_vcpu_load: step('vcpu_load', name, { vcpu: small(63), cpu: small(63), expect: okErrSchema }),
    step_vcpu_put: step('vcpu_put', name, { cpu: small(63), expect: okErrSchema }),
    step_memcache_topup: step('memcache_topup', name, { vcpu: small(63), pages: small(4096), expect: okErrSchema }, ['pages']),
    step_guest_access: step(
      'guest_access',
      name,
      {
        vcpu: small(63),
        cpu: small(63),
        ipa: { $ref: '#/$defs/u53' },
        access: { type: 'string', enum: ['read', 'write', 'exec'] },
        handle: { type: 'boolean' },
        value: { $ref: '#/$defs/u53' },
        expect: {
          type: 'object',
          additionalProperties: false,
          properties: {
            result: { type: 'string', enum: ['ok', 'exit', 'error'] },
            esr_el2: { $ref: '#/$defs/u53' },
            hpfar_el2: { $ref: '#/$defs/u53' },
            far_el2: { $ref: '#/$defs/u53' },
            errno: { $ref: '#/$defs/errno' },
            value: { $ref: '#/$defs/u53' },
            exits: { type: 'integer', minimum: 0 },
          },
        },
      },
      ['ipa', 'access'],
    ),
    step_handle_exit: step('handle_exit', name, { vcpu: small(63), cpu: small(63), expect: okErrSchema }),
    step_guest_hvc: step(
      'guest_hvc',
      name,
      {
        vcpu: small(63),
        cpu: small(63),
        fn: { type: 'string', minLength: 1, description: 'a guest service like "MEM_SHARE" or a raw id' },
        args: { type: 'array', maxItems: 7, items: { $ref: '#/$defs/arg' } },
        expect: regExpect,
      },
      ['fn'],
    ),
    step_host_access: step(
      'host_access',
      { $ref: '#/$defs/u53' },
      {
        cpu: small(63),
        access: { type: 'string', enum: ['read', 'write'] },
        value: { $ref: '#/$defs/u53' },
        expect: {
          type: 'object',
          additionalProperties: false,
          properties: { result: { type: 'string', enum: ['ok', 'abort'] }, value: { $ref: '#/$defs/u53' } },
        },
      },
    ),
    step_host_event: step(
      'host_event',
      { type: 'string', enum: ['munmap', 'numa_balance', 'compaction'] },
      {
        vm: name,
        ipa: { $ref: '#/$defs/u53' },
        pages: { type: 'integer', minimum: 1, maximum: 1048576 },
        expect: {
          type: 'object',
          additionalProperties: false,
          properties: {
            result: result3,
            errno: { $ref: '#/$defs/errno' },
            migrated: { type: 'integer', minimum: 0 },
            guest_mapped: { type: 'boolean' },
          },
        },
      },
      ['vm', 'ipa'],
    ),
    step_expect_page: step('expect_page', { $ref: '#/$defs/u53' }, {
      host: pageState,
      hyp: pageState,
      guests: { type: 'object', additionalProperties: pageState },
      pinned: { type: 'boolean' },
      owner: { type: 'string', enum: ['host', 'hyp', 'guest'] },
    }),
    step_expect_vm: step('expect_vm', name, {
      handle: { $ref: '#/$defs/u53' },
      pinned_pages: { type: 'integer', minimum: 0 },
      locked_pages: { type: 'integer', minimum: 0 },
      mapped_pages: { type: 'integer', minimum: 0 },
      exists: { type: 'boolean' },
    }),
    step_set: step(
      'set',
      {
        type: 'object',
        minProperties: 1,
        additionalProperties: false,
        properties: {
          memlock_limit: { $ref: '#/$defs/size' },
          host_alloc_limit: { type: 'integer', minimum: 0 },
          check_invariants: { type: 'boolean' },
        },
      },
      {},
    ),
    step_check_invariants: step('check_invariants', { const: true }, {}),
  },
};

/** A 64-bit value as halves (hypercall arguments and register values may exceed 2^53). */
export interface U64Val {
  readonly lo: number;
  readonly hi: number;
}

/** A hypercall argument before symbolic resolution. */
export type ArgSpec =
  | { readonly kind: 'value'; readonly v: U64Val }
  | { readonly kind: 'handle'; readonly vm: string }
  | { readonly kind: 'pfn'; readonly pa: number }
  | { readonly kind: 'kvm_pfn'; readonly vm: string }
  | { readonly kind: 'vcpu_pfn'; readonly vm: string; readonly vcpu: number };

/** An expected register value. */
export type RegExpect = U64Val;

/** Expected registers of an HVC step. */
export interface RegExpects {
  readonly x0?: RegExpect;
  readonly x1?: RegExpect;
  readonly x2?: RegExpect;
  readonly x3?: RegExpect;
}

/** The page states of pkvm.md §1.2 as scenario text. */
export const PageStateName = {
  OWNED: 'OWNED',
  SHARED_OWNED: 'SHARED_OWNED',
  SHARED_BORROWED: 'SHARED_BORROWED',
  NOPAGE: 'NOPAGE',
} as const;
/** A page-state name. */
export type PageStateName = (typeof PageStateName)[keyof typeof PageStateName];

/** The `ok`/`error` result of a host-side operation, with its errno. */
export interface OkErrExpect {
  readonly result?: 'ok' | 'error';
  readonly errno?: number;
}

/** Machine description of a scenario, with defaults applied. */
export interface ScenarioMachine {
  readonly ram: readonly { readonly base: number; readonly size: number }[];
  readonly cpus: number;
  readonly paBits: number;
  readonly profile: string;
  readonly hypPool: { readonly base: number; readonly pages: number } | null;
  readonly tlb: boolean;
}

/** One scenario step (the JSON step's first key is `kind`). `index` is its position in `steps`. */
export type Step = { readonly index: number; readonly comment?: string } & (
  | { readonly kind: 'hvc'; readonly fn: string; readonly cpu: number; readonly args: readonly ArgSpec[]; readonly expect: RegExpects | null }
  | {
      readonly kind: 'vm_create';
      readonly name: string;
      readonly memory: number;
      readonly ipaBase: number;
      readonly backingPa: number;
      readonly vcpus: number;
      readonly protected: boolean;
      readonly expect: (OkErrExpect & { readonly handle?: number }) | null;
    }
  | { readonly kind: 'vm_destroy'; readonly name: string; readonly expect: OkErrExpect | null }
  | { readonly kind: 'vcpu_load'; readonly name: string; readonly vcpu: number; readonly cpu: number; readonly expect: OkErrExpect | null }
  | { readonly kind: 'vcpu_put'; readonly name: string; readonly cpu: number; readonly expect: OkErrExpect | null }
  | { readonly kind: 'memcache_topup'; readonly name: string; readonly vcpu: number; readonly pages: number; readonly expect: OkErrExpect | null }
  | {
      readonly kind: 'guest_access';
      readonly name: string;
      readonly vcpu: number;
      readonly cpu: number | null;
      readonly ipa: number;
      readonly access: 'read' | 'write' | 'exec';
      readonly handle: boolean;
      readonly value: number | null;
      readonly expect: {
        readonly result?: 'ok' | 'exit' | 'error';
        readonly esrEl2?: number;
        readonly hpfarEl2?: number;
        readonly farEl2?: number;
        readonly errno?: number;
        readonly value?: number;
        readonly exits?: number;
      } | null;
    }
  | { readonly kind: 'handle_exit'; readonly name: string; readonly vcpu: number; readonly cpu: number | null; readonly expect: OkErrExpect | null }
  | {
      readonly kind: 'guest_hvc';
      readonly name: string;
      readonly vcpu: number;
      readonly cpu: number | null;
      readonly fn: string;
      readonly args: readonly ArgSpec[];
      readonly expect: RegExpects | null;
    }
  | {
      readonly kind: 'host_access';
      readonly pa: number;
      readonly cpu: number;
      readonly access: 'read' | 'write';
      readonly value: number | null;
      readonly expect: { readonly result?: 'ok' | 'abort'; readonly value?: number } | null;
    }
  | {
      readonly kind: 'host_event';
      readonly event: 'munmap' | 'numa_balance' | 'compaction';
      readonly vm: string;
      readonly ipa: number;
      readonly pages: number;
      readonly expect: (OkErrExpect & { readonly migrated?: number; readonly guestMapped?: boolean }) | null;
    }
  | {
      readonly kind: 'expect_page';
      readonly pa: number;
      readonly host?: PageStateName;
      readonly hyp?: PageStateName;
      readonly guests?: Readonly<Record<string, PageStateName>>;
      readonly pinned?: boolean;
      readonly owner?: 'host' | 'hyp' | 'guest';
    }
  | {
      readonly kind: 'expect_vm';
      readonly name: string;
      readonly handle?: number;
      readonly pinnedPages?: number;
      readonly lockedPages?: number;
      readonly mappedPages?: number;
      readonly exists?: boolean;
    }
  | {
      readonly kind: 'set';
      readonly memlockLimit?: number;
      readonly hostAllocLimit?: number;
      /** Not part of the format (the host always tops up, as KVM does); `never` keeps older step builders compiling. */
      readonly autoTopup?: never;
      readonly checkInvariants?: boolean;
    }
  | { readonly kind: 'check_invariants' }
);

/** The kind names of {@link Step}, in schema order. */
export const STEP_KINDS = [
  'hvc',
  'vm_create',
  'vm_destroy',
  'vcpu_load',
  'vcpu_put',
  'memcache_topup',
  'guest_access',
  'handle_exit',
  'guest_hvc',
  'host_access',
  'host_event',
  'expect_page',
  'expect_vm',
  'set',
  'check_invariants',
] as const;
/** A step kind. */
export type StepKind = (typeof STEP_KINDS)[number];

/** A parsed scenario. */
export interface Scenario {
  readonly file: string;
  readonly name: string;
  readonly description: string;
  readonly machine: ScenarioMachine;
  readonly steps: readonly Step[];
}

/** Result of {@link parseScenario}: the scenario, or messages naming file, JSON path and what was expected. */
export type ParseResult = { readonly ok: true; readonly scenario: Scenario } | { readonly ok: false; readonly errors: readonly string[] };

/** Default machine when a scenario leaves a key out: 2 CPUs, 40-bit PAs, profile `pkvm-2022`, TLB on. */
export const SCENARIO_DEFAULTS = { cpus: 2, paBits: 40, profile: 'pkvm-2022', tlb: true } as const;


const UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 };

/** Parses a validated `u53`/`size` value (hex, integer or `64M`) to a number, or null if it exceeds 2^53 − 1. */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  if (v.startsWith('0x')) {
    const h = parseHex64(v);
    if (h === null || h.hi >= 0x20_0000) return null;
    return h.hi * 2 ** 32 + h.lo;
  }
  const m = /^([0-9]+)([KMG]?)$/.exec(v);
  if (m === null) return null;
  const n = Number(m[1]) * (m[2] ? (UNITS[m[2]] as number) : 1);
  return Number.isSafeInteger(n) ? n : null;
}

/** Sign-extends a JS integer in [−2^63, 2^64) into halves. */
function intToU64(n: number): U64Val {
  if (n >= 0) return { lo: n >>> 0, hi: Math.floor(n / 2 ** 32) >>> 0 };
  const b = (1n << 64n) + BigInt(n);
  return { lo: Number(b & 0xffff_ffffn), hi: Number(b >> 32n) };
}

/** Parses a validated register expectation (status name, errno, hex, integer) to halves. */
export function parseRegValue(v: unknown): U64Val | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? intToU64(v) : null;
  if (typeof v !== 'string') return null;
  if (Object.prototype.hasOwnProperty.call(SmcccRet, v)) return intToU64(SmcccRet[v as keyof typeof SmcccRet]);
  if (v.startsWith('0x')) return parseHex64(v);
  const e = parseErrno(v);
  return e === null ? null : intToU64(e);
}

interface Ctx {
  readonly file: string;
  readonly errors: string[];
}

function bad(ctx: Ctx, path: (string | number)[], msg: string): void {
  ctx.errors.push(`${ctx.file}: ${formatPath(path)}: ${msg}`);
}

function num(ctx: Ctx, o: Record<string, unknown>, key: string, path: (string | number)[], dflt: number): number {
  if (!Object.prototype.hasOwnProperty.call(o, key)) return dflt;
  const n = parseSize(o[key]);
  if (n === null) {
    bad(ctx, [...path, key], `expected a value below 2^53, got ${JSON.stringify(o[key])}`);
    return dflt;
  }
  return n;
}

function errnoOf(ctx: Ctx, v: unknown, path: (string | number)[]): number | undefined {
  if (v === undefined) return undefined;
  const e = parseErrno(String(v));
  if (e === null || e > 0) {
    bad(ctx, path, `expected an errno name like "-EPERM" or "0", got ${JSON.stringify(v)}`);
    return undefined;
  }
  return e;
}

function regs(ctx: Ctx, e: unknown, path: (string | number)[]): RegExpects | null {
  if (e === undefined) return null;
  const o = e as Record<string, unknown>;
  const out: Record<string, RegExpect> = {};
  for (const k of Object.keys(o)) {
    const r = parseRegValue(o[k]);
    if (r === null) bad(ctx, [...path, k], `expected a register value, got ${JSON.stringify(o[k])}`);
    else out[k] = r;
  }
  return out;
}

function args(ctx: Ctx, a: unknown, path: (string | number)[]): ArgSpec[] {
  if (a === undefined) return [];
  return (a as unknown[]).map((v, i): ArgSpec => {
    if (typeof v === 'string' && v.startsWith('handle:')) return { kind: 'handle', vm: v.slice(7) };
    if (typeof v === 'string' && v.startsWith('kvm_pfn:')) return { kind: 'kvm_pfn', vm: v.slice(8) };
    if (typeof v === 'string' && v.startsWith('vcpu_pfn:')) {
      const m = /^vcpu_pfn:(.+):([0-9]+)$/.exec(v) as RegExpExecArray; // JUSTIFY: the schema pattern matched.
      return { kind: 'vcpu_pfn', vm: m[1] as string, vcpu: Number(m[2]) };
    }
    if (typeof v === 'string' && v.startsWith('pfn:')) {
      const pa = parseSize(v.slice(4));
      if (pa === null) bad(ctx, [...path, i], `expected "pfn:<PA below 2^53>", got ${JSON.stringify(v)}`);
      return { kind: 'pfn', pa: pa ?? 0 };
    }
    const r = typeof v === 'string' ? parseHex64(v) : parseRegValue(v);
    if (r === null) bad(ctx, [...path, i], `expected an argument, got ${JSON.stringify(v)}`);
    return { kind: 'value', v: r ?? { lo: 0, hi: 0 } };
  });
}

function okErr(ctx: Ctx, e: unknown, path: (string | number)[]): OkErrExpect | null {
  if (e === undefined) return null;
  const o = e as Record<string, unknown>;
  const out: { result?: 'ok' | 'error'; errno?: number } = {};
  if (o.result !== undefined) out.result = o.result as 'ok' | 'error';
  const en = errnoOf(ctx, o.errno, [...path, 'errno']);
  if (en !== undefined) out.errno = en;
  return out;
}

function opt<T>(v: T | undefined): T | null {
  return v === undefined ? null : v;
}

function parseStep(ctx: Ctx, raw: Record<string, unknown>, i: number): Step | null {
  const path: (string | number)[] = ['steps', i];
  const first = Object.keys(raw)[0] as string;
  if (!(STEP_KINDS as readonly string[]).includes(first)) {
    const kind = STEP_KINDS.find((k) => Object.prototype.hasOwnProperty.call(raw, k));
    bad(ctx, [...path, first], `the first key must name the step kind ("${kind ?? '?'}"), got "${first}"`);
    return null;
  }
  const kind = first as StepKind;
  const base = { index: i, ...(typeof raw.comment === 'string' ? { comment: raw.comment } : {}) };
  const ex = raw.expect as Record<string, unknown> | undefined;
  const exPath = [...path, 'expect'];
  const s = (k: string): string => raw[k] as string;
  const int = (k: string, d: number): number => (raw[k] === undefined ? d : (raw[k] as number));
  switch (kind) {
    case 'hvc':
      return { ...base, kind, fn: s('hvc'), cpu: int('cpu', 0), args: args(ctx, raw.args, [...path, 'args']), expect: regs(ctx, ex, exPath) };
    case 'vm_create': {
      const e = ex === undefined ? null : { ...okErr(ctx, ex, exPath), ...(ex.handle !== undefined ? { handle: num(ctx, ex, 'handle', exPath, 0) } : {}) };
      return {
        ...base,
        kind,
        name: s('vm_create'),
        memory: num(ctx, raw, 'memory', path, 0),
        ipaBase: num(ctx, raw, 'ipa_base', path, 0),
        backingPa: num(ctx, raw, 'backing_pa', path, 0),
        vcpus: int('vcpus', 1),
        protected: raw.protected === true,
        expect: e,
      };
    }
    case 'vm_destroy':
      return { ...base, kind, name: s('vm_destroy'), expect: okErr(ctx, ex, exPath) };
    case 'vcpu_load':
      return { ...base, kind, name: s('vcpu_load'), vcpu: int('vcpu', 0), cpu: int('cpu', 0), expect: okErr(ctx, ex, exPath) };
    case 'vcpu_put':
      return { ...base, kind, name: s('vcpu_put'), cpu: int('cpu', 0), expect: okErr(ctx, ex, exPath) };
    case 'memcache_topup':
      return { ...base, kind, name: s('memcache_topup'), vcpu: int('vcpu', 0), pages: int('pages', 0), expect: okErr(ctx, ex, exPath) };
    case 'guest_access': {
      let e = null;
      if (ex !== undefined) {
        const o: Record<string, unknown> = {};
        if (ex.result !== undefined) o.result = ex.result;
        if (ex.esr_el2 !== undefined) o.esrEl2 = num(ctx, ex, 'esr_el2', exPath, 0);
        if (ex.hpfar_el2 !== undefined) o.hpfarEl2 = num(ctx, ex, 'hpfar_el2', exPath, 0);
        if (ex.far_el2 !== undefined) o.farEl2 = num(ctx, ex, 'far_el2', exPath, 0);
        if (ex.value !== undefined) o.value = num(ctx, ex, 'value', exPath, 0);
        if (ex.exits !== undefined) o.exits = ex.exits;
        const en = errnoOf(ctx, ex.errno, [...exPath, 'errno']);
        if (en !== undefined) o.errno = en;
        e = o as NonNullable<Extract<Step, { kind: 'guest_access' }>['expect']>;
      }
      return {
        ...base,
        kind,
        name: s('guest_access'),
        vcpu: int('vcpu', 0),
        cpu: opt(raw.cpu as number | undefined),
        ipa: num(ctx, raw, 'ipa', path, 0),
        access: raw.access as 'read' | 'write' | 'exec',
        handle: raw.handle !== false,
        value: raw.value === undefined ? null : num(ctx, raw, 'value', path, 0),
        expect: e,
      };
    }
    case 'handle_exit':
      return { ...base, kind, name: s('handle_exit'), vcpu: int('vcpu', 0), cpu: opt(raw.cpu as number | undefined), expect: okErr(ctx, ex, exPath) };
    case 'guest_hvc':
      return {
        ...base,
        kind,
        name: s('guest_hvc'),
        vcpu: int('vcpu', 0),
        cpu: opt(raw.cpu as number | undefined),
        fn: s('fn'),
        args: args(ctx, raw.args, [...path, 'args']),
        expect: regs(ctx, ex, exPath),
      };
    case 'host_access':
      return {
        ...base,
        kind,
        pa: num(ctx, raw, 'host_access', path, 0),
        cpu: int('cpu', 0),
        access: (raw.access as 'read' | 'write' | undefined) ?? 'read',
        value: raw.value === undefined ? null : num(ctx, raw, 'value', path, 0),
        expect:
          ex === undefined
            ? null
            : {
                ...(ex.result !== undefined ? { result: ex.result as 'ok' | 'abort' } : {}),
                ...(ex.value !== undefined ? { value: num(ctx, ex, 'value', exPath, 0) } : {}),
              },
      };
    case 'host_event': {
      let e = null;
      if (ex !== undefined) {
        e = {
          ...okErr(ctx, ex, exPath),
          ...(ex.migrated !== undefined ? { migrated: ex.migrated as number } : {}),
          ...(ex.guest_mapped !== undefined ? { guestMapped: ex.guest_mapped as boolean } : {}),
        };
      }
      return {
        ...base,
        kind,
        event: raw.host_event as 'munmap' | 'numa_balance' | 'compaction',
        vm: s('vm'),
        ipa: num(ctx, raw, 'ipa', path, 0),
        pages: int('pages', 1),
        expect: e,
      };
    }
    case 'expect_page':
      return {
        ...base,
        kind,
        pa: num(ctx, raw, 'expect_page', path, 0),
        ...(raw.host !== undefined ? { host: raw.host as PageStateName } : {}),
        ...(raw.hyp !== undefined ? { hyp: raw.hyp as PageStateName } : {}),
        ...(raw.guests !== undefined ? { guests: raw.guests as Record<string, PageStateName> } : {}),
        ...(raw.pinned !== undefined ? { pinned: raw.pinned as boolean } : {}),
        ...(raw.owner !== undefined ? { owner: raw.owner as 'host' | 'hyp' | 'guest' } : {}),
      };
    case 'expect_vm':
      return {
        ...base,
        kind,
        name: s('expect_vm'),
        ...(raw.handle !== undefined ? { handle: num(ctx, raw, 'handle', path, 0) } : {}),
        ...(raw.pinned_pages !== undefined ? { pinnedPages: raw.pinned_pages as number } : {}),
        ...(raw.locked_pages !== undefined ? { lockedPages: raw.locked_pages as number } : {}),
        ...(raw.mapped_pages !== undefined ? { mappedPages: raw.mapped_pages as number } : {}),
        ...(raw.exists !== undefined ? { exists: raw.exists as boolean } : {}),
      };
    case 'set': {
      const o = raw.set as Record<string, unknown>;
      const setPath = [...path, 'set'];
      return {
        ...base,
        kind,
        ...(o.memlock_limit !== undefined ? { memlockLimit: num(ctx, o, 'memlock_limit', setPath, 0) } : {}),
        ...(o.host_alloc_limit !== undefined ? { hostAllocLimit: o.host_alloc_limit as number } : {}),
        ...(o.check_invariants !== undefined ? { checkInvariants: o.check_invariants as boolean } : {}),
      };
    }
    case 'check_invariants':
      return { ...base, kind };
  }
}

/**
 * Parses scenario text: JSON syntax, then the schema, then semantic checks (first key names the kind, values below
 * 2^53, VM names defined before use, RAM regions page-aligned and disjoint). Never throws on input.
 */
export function parseScenario(text: string, file: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, errors: [`${file}: not valid JSON: ${(e as Error).message}`] };
  }
  const issues: Issue[] = validateJson(json, SCENARIO_SCHEMA);
  if (issues.length > 0) return { ok: false, errors: issues.map((i) => `${file}: ${i.path}: ${i.message}`) };
  const ctx: Ctx = { file, errors: [] };
  const root = json as Record<string, unknown>;
  const m = root.machine as Record<string, unknown>;
  const ram = (m.ram as Record<string, unknown>[]).map((r, i) => ({
    base: num(ctx, r, 'base', ['machine', 'ram', i], 0),
    size: num(ctx, r, 'size', ['machine', 'ram', i], 0),
  }));
  ram.forEach((r, i) => {
    if (r.base % 4096 !== 0 || r.size % 4096 !== 0 || r.size === 0) bad(ctx, ['machine', 'ram', i], 'expected a non-empty, 4 KiB-aligned base and size');
    ram.forEach((o, j) => {
      if (j > i && r.base < o.base + o.size && o.base < r.base + r.size) bad(ctx, ['machine', 'ram', j], `overlaps machine.ram[${i}]`);
    });
  });
  const hp = m.hyp_pool as Record<string, unknown> | undefined;
  const hypPool = hp === undefined ? null : { base: num(ctx, hp, 'base', ['machine', 'hyp_pool'], 0), pages: hp.pages as number };
  if (hypPool !== null && hypPool.base % 4096 !== 0) bad(ctx, ['machine', 'hyp_pool', 'base'], 'expected a 4 KiB-aligned address');
  const machine: ScenarioMachine = {
    ram,
    cpus: (m.cpus as number | undefined) ?? SCENARIO_DEFAULTS.cpus,
    paBits: (m.pa_bits as number | undefined) ?? SCENARIO_DEFAULTS.paBits,
    profile: (m.profile as string | undefined) ?? SCENARIO_DEFAULTS.profile,
    hypPool,
    tlb: (m.tlb as boolean | undefined) ?? SCENARIO_DEFAULTS.tlb,
  };
  const steps: Step[] = [];
  const vms = new Set<string>();
  const vcpusOf = new Map<string, number>();
  (root.steps as Record<string, unknown>[]).forEach((raw, i) => {
    const st = parseStep(ctx, raw, i);
    if (st === null) return;
    const cpuOf = (st as { cpu?: number | null }).cpu;
    if (typeof cpuOf === 'number' && cpuOf >= machine.cpus) bad(ctx, ['steps', i, 'cpu'], `expected a CPU index below machine.cpus (${machine.cpus}), got ${cpuOf}`);
    if (st.kind === 'vm_create') {
      if (vms.has(st.name)) bad(ctx, ['steps', i, 'vm_create'], `VM "${st.name}" is already defined`);
      vms.add(st.name);
    }
    if (st.kind === 'vm_create') vcpusOf.set(st.name, st.vcpus);
    const vcpu = (st as { vcpu?: number }).vcpu;
    const owner = 'name' in st ? st.name : null;
    if (typeof vcpu === 'number' && owner !== null && vcpusOf.has(owner) && vcpu >= (vcpusOf.get(owner) as number)) {
      bad(ctx, ['steps', i, 'vcpu'], `expected a vCPU index below ${vcpusOf.get(owner)} (VM "${owner}" has that many), got ${vcpu}`);
    }
    if (st.kind === 'hvc' || st.kind === 'guest_hvc') {
      st.args.forEach((a, j) => {
        if (a.kind === 'vcpu_pfn' && vcpusOf.has(a.vm) && a.vcpu >= (vcpusOf.get(a.vm) as number)) bad(ctx, ['steps', i, 'args', j], `VM "${a.vm}" has no vCPU ${a.vcpu}`);
        if (st.kind === 'guest_hvc' && a.kind === 'value' && a.v.hi >= 0x20_0000) bad(ctx, ['steps', i, 'args', j], 'expected a guest argument below 2^53');
      });
    }
    if (st.kind === 'guest_access' && st.ipa % (st.access === 'exec' ? 4 : 8) !== 0) {
      bad(ctx, ['steps', i, 'ipa'], `expected an IPA aligned to ${st.access === 'exec' ? 4 : 8} bytes (a 64-bit ${st.access === 'exec' ? 'instruction fetch' : 'access'}), got 0x${st.ipa.toString(16)}`);
    }
    if (st.kind === 'host_access' && st.pa % 8 !== 0) bad(ctx, ['steps', i, 'host_access'], `expected a PA aligned to 8 bytes, got 0x${st.pa.toString(16)}`);
    const refs: [string, string][] = [];
    if ('name' in st && st.kind !== 'vm_create') refs.push([st.name, st.kind]);
    if (st.kind === 'host_event') refs.push([st.vm, 'vm']);
    if (st.kind === 'expect_page' && st.guests !== undefined) for (const g of Object.keys(st.guests)) refs.push([g, 'guests']);
    if (st.kind === 'hvc' || st.kind === 'guest_hvc') for (const a of st.args) if (a.kind === 'handle' || a.kind === 'kvm_pfn' || a.kind === 'vcpu_pfn') refs.push([a.vm, 'args']);
    for (const [vm, key] of refs) if (!vms.has(vm)) bad(ctx, ['steps', i, key], `VM "${vm}" is not created by an earlier vm_create step`);
    steps.push(st);
  });
  if (ctx.errors.length > 0) return { ok: false, errors: ctx.errors };
  return {
    ok: true,
    scenario: {
      file,
      name: (root.name as string | undefined) ?? file,
      description: (root.description as string | undefined) ?? '',
      machine,
      steps,
    },
  };
}
