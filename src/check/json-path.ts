/**
 * Edge validation of user JSON (scenarios, fixtures): JSON paths (`$.steps[3].expect.x0`) and a small JSON Schema
 * (draft 2020-12 subset) interpreter whose messages name the path and what was expected (DESIGN.md §4: user input is
 * validated at the edge, exit status 2, never a throw).
 *
 * Supported keywords: `type` (string or list; `integer` means a safe integer), `enum`, `const`, `pattern`,
 * `minimum`, `maximum`, `minLength`, `properties`, `required`, `additionalProperties` (boolean or schema),
 * `minProperties`, `maxProperties`, `items`, `minItems`, `maxItems`, `anyOf`, `oneOf`, `$ref` (`#/$defs/<name>`).
 * `description` is the human phrase used when an `anyOf`/`oneOf` fails as a whole. For a `oneOf` whose branches each
 * require a distinct first property (the "first key names the kind" shape of scenario steps), the branch is chosen
 * by that property so the errors come from the branch the author meant.
 */

/** A JSON Schema node, as far as this interpreter reads it. */
export interface SchemaNode {
  readonly $ref?: string;
  readonly type?: string | readonly string[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | SchemaNode;
  readonly minProperties?: number;
  readonly maxProperties?: number;
  readonly items?: SchemaNode;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly anyOf?: readonly SchemaNode[];
  readonly oneOf?: readonly SchemaNode[];
  readonly description?: string;
  readonly $defs?: Readonly<Record<string, SchemaNode>>;
}

/** One validation problem: where (a JSON path) and what was expected. */
export interface Issue {
  readonly path: string;
  readonly message: string;
}

/** A path segment: a property name or an array index. */
export type PathSeg = string | number;

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Formats path segments as a JSON path: `$`, `$.steps[3].expect.x0`, `$.guests["my vm"]`. */
export function formatPath(segs: readonly PathSeg[]): string {
  let s = '$';
  for (const seg of segs) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (IDENT.test(seg)) s += `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}

/** A short rendering of a JSON value for messages (`"0x12"`, `42`, `an object`). */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  return String(v);
}

/** The JSON type name of `v` as JSON Schema spells it (`integer` for safe integers). */
export function jsonTypeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isSafeInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(v: unknown, t: string): boolean {
  const actual = jsonTypeOf(v);
  if (t === 'number') return actual === 'number' || actual === 'integer';
  return actual === t;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function resolveRef(root: SchemaNode, ref: string): SchemaNode | null {
  const m = /^#\/\$defs\/(.+)$/.exec(ref);
  if (m === null || root.$defs === undefined) return null;
  const name = m[1] as string; // JUSTIFY: the regex has one capture group.
  return Object.prototype.hasOwnProperty.call(root.$defs, name) ? (root.$defs[name] as SchemaNode) : null;
}

/** A human phrase for what `node` accepts, used when a whole alternative fails. */
export function expectedPhrase(root: SchemaNode, node: SchemaNode): string {
  if (node.description !== undefined) return node.description;
  if (node.$ref !== undefined) {
    const target = resolveRef(root, node.$ref);
    return target !== null ? expectedPhrase(root, target) : node.$ref;
  }
  if (node.enum !== undefined) return 'one of ' + node.enum.map((e) => JSON.stringify(e)).join(', ');
  if (node.const !== undefined) return JSON.stringify(node.const);
  if (node.type !== undefined) return typeof node.type === 'string' ? `a ${node.type}` : node.type.join(' or ');
  const alts = node.anyOf ?? node.oneOf;
  if (alts !== undefined) return alts.map((a) => expectedPhrase(root, a)).join(', or ');
  return 'a valid value';
}

/** Validates `value` against `schema` (whose `$defs` resolve `$ref`s) and returns every issue found. */
export function validateJson(value: unknown, schema: SchemaNode): Issue[] {
  const issues: Issue[] = [];
  check(value, schema, schema, [], issues);
  return issues;
}

function check(v: unknown, node: SchemaNode, root: SchemaNode, path: PathSeg[], out: Issue[]): void {
  const at = (): string => formatPath(path);
  if (node.$ref !== undefined) {
    const target = resolveRef(root, node.$ref);
    if (target === null) {
      out.push({ path: at(), message: `schema error: unresolvable $ref ${node.$ref}` });
      return;
    }
    check(v, target, root, path, out);
    return;
  }
  if (node.anyOf !== undefined) {
    let ok = false;
    for (const alt of node.anyOf) {
      if (validateAt(v, alt, root, path).length === 0) {
        ok = true;
        break;
      }
    }
    if (!ok) out.push({ path: at(), message: `expected ${expectedPhrase(root, node)}, got ${describeValue(v)}` });
    return;
  }
  if (node.oneOf !== undefined) {
    checkOneOf(v, node, root, path, out);
    return;
  }
  if (node.type !== undefined) {
    const types = typeof node.type === 'string' ? [node.type] : node.type;
    if (!types.some((t) => typeMatches(v, t))) {
      const want = node.description ?? (types.length === 1 ? `a${/^[aeiou]/.test(types[0] as string) ? 'n' : ''} ${types[0]}` : types.join(' or '));
      out.push({ path: at(), message: `expected ${want}, got ${describeValue(v)}` });
      return;
    }
  }
  if (node.const !== undefined && v !== node.const) {
    out.push({ path: at(), message: `expected ${JSON.stringify(node.const)}, got ${describeValue(v)}` });
    return;
  }
  if (node.enum !== undefined && !node.enum.includes(v)) {
    out.push({ path: at(), message: `expected one of ${node.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${describeValue(v)}` });
    return;
  }
  if (typeof v === 'string') {
    if (node.minLength !== undefined && v.length < node.minLength) out.push({ path: at(), message: `expected a string of at least ${node.minLength} characters` });
    if (node.pattern !== undefined && !new RegExp(node.pattern).test(v)) {
      out.push({ path: at(), message: `expected ${node.description ?? `a string matching /${node.pattern}/`}, got ${describeValue(v)}` });
    }
  }
  if (typeof v === 'number') {
    if (node.minimum !== undefined && v < node.minimum) out.push({ path: at(), message: `expected a number ≥ ${node.minimum}, got ${v}` });
    if (node.maximum !== undefined && v > node.maximum) out.push({ path: at(), message: `expected a number ≤ ${node.maximum}, got ${v}` });
  }
  if (Array.isArray(v)) {
    if (node.minItems !== undefined && v.length < node.minItems) out.push({ path: at(), message: `expected at least ${node.minItems} item(s), got ${v.length}` });
    if (node.maxItems !== undefined && v.length > node.maxItems) out.push({ path: at(), message: `expected at most ${node.maxItems} item(s), got ${v.length}` });
    if (node.items !== undefined) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        check(v[i], node.items, root, path, out);
        path.pop();
      }
    }
  }
  if (isPlainObject(v)) checkObject(v, node, root, path, out);
}

function checkObject(v: Record<string, unknown>, node: SchemaNode, root: SchemaNode, path: PathSeg[], out: Issue[]): void {
  const keys = Object.keys(v);
  if (node.minProperties !== undefined && keys.length < node.minProperties) {
    out.push({ path: formatPath(path), message: `expected at least ${node.minProperties} key(s)` });
  }
  if (node.maxProperties !== undefined && keys.length > node.maxProperties) {
    out.push({ path: formatPath(path), message: `expected at most ${node.maxProperties} key(s), got ${keys.length}` });
  }
  for (const req of node.required ?? []) {
    if (!Object.prototype.hasOwnProperty.call(v, req)) out.push({ path: formatPath(path), message: `missing required key "${req}"` });
  }
  const props = node.properties ?? {};
  for (const k of keys) {
    path.push(k);
    if (Object.prototype.hasOwnProperty.call(props, k)) {
      check(v[k], props[k] as SchemaNode, root, path, out);
    } else if (node.additionalProperties === false) {
      const known = Object.keys(props);
      out.push({ path: formatPath(path), message: `unknown key "${k}"${known.length > 0 ? ` (expected one of: ${known.join(', ')})` : ''}` });
    } else if (typeof node.additionalProperties === 'object') {
      check(v[k], node.additionalProperties, root, path, out);
    }
    path.pop();
  }
}

function validateAt(v: unknown, node: SchemaNode, root: SchemaNode, path: PathSeg[]): Issue[] {
  const out: Issue[] = [];
  check(v, node, root, path.slice(), out);
  return out;
}

/** The first required key of a `oneOf` branch (after `$ref` resolution), its discriminant. */
function discriminant(root: SchemaNode, alt: SchemaNode): string | null {
  const node = alt.$ref !== undefined ? resolveRef(root, alt.$ref) : alt;
  if (node === null || node.required === undefined || node.required.length === 0) return null;
  return node.required[0] as string;
}

function checkOneOf(v: unknown, node: SchemaNode, root: SchemaNode, path: PathSeg[], out: Issue[]): void {
  const alts = node.oneOf as readonly SchemaNode[];
  const discs = alts.map((a) => discriminant(root, a));
  const keyed = isPlainObject(v) && discs.every((d) => d !== null) && new Set(discs).size === discs.length;
  if (keyed) {
    const obj = v as Record<string, unknown>;
    const present = alts.filter((_, i) => Object.prototype.hasOwnProperty.call(obj, discs[i] as string));
    if (present.length === 1) {
      check(v, present[0] as SchemaNode, root, path, out);
      return;
    }
    const names = (discs as string[]).map((d) => `"${d}"`).join(', ');
    const what = present.length === 0 ? 'no kind key' : `several kind keys (${present.map((a) => discriminant(root, a)).join(', ')})`;
    out.push({ path: formatPath(path), message: `expected an object with exactly one kind key among ${names}; found ${what}` });
    return;
  }
  let matches = 0;
  for (const alt of alts) if (validateAt(v, alt, root, path).length === 0) matches++;
  if (matches !== 1) {
    const why = matches === 0 ? `got ${describeValue(v)}` : `${describeValue(v)} matches ${matches} alternatives`;
    out.push({ path: formatPath(path), message: `expected ${expectedPhrase(root, node)}, ${why}` });
  }
}
