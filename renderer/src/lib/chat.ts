// The chat task's column mapping as the forms hold it (text boxes, "" = the
// default), turned into the contract's chat template; and what the Datasets
// preview says about a rendered chat row.

import type { RenderedExample, TaskTemplate } from '../../../electron/common/contract.ts';
import { parsePairs } from '../../../electron/common/format.ts';

export type ChatTaskTemplate = Extract<TaskTemplate, { kind: 'chat' }>;
type RenderedChat = Extract<RenderedExample, { kind: 'chat' }>;

export const CHAT_FORMATS = [
  { id: '', label: 'found from the fields' },
  { id: 'messages', label: 'OpenAI messages (role, content)' },
  { id: 'sharegpt', label: 'ShareGPT conversations (from, value)' },
  { id: 'alpaca', label: 'Alpaca (instruction, input, output)' },
] as const;

export interface ChatFields {
  format: '' | 'messages' | 'sharegpt' | 'alpaca';
  messagesField: string;
  roleField: string;
  contentField: string;
  /** "Customer=user, Agent=assistant" */
  roleMap: string;
  instructionField: string;
  inputField: string;
  outputField: string;
  systemPrompt: string;
}

export function emptyChatFields(): ChatFields {
  return { format: '', messagesField: '', roleField: '', contentField: '', roleMap: '', instructionField: '', inputField: '', outputField: '', systemPrompt: '' };
}

const ROLES = ['system', 'user', 'assistant', 'tool'] as const;

/** The role map typed as "name=role, ...": the map, or what is wrong with it. */
export function parseRoleMap(text: string): { map: Record<string, (typeof ROLES)[number]>; error: string | null } {
  const map: Record<string, (typeof ROLES)[number]> = {};
  let pairs: Record<string, string>;
  try {
    pairs = parsePairs(text, 'role');
  } catch (e) {
    return { map, error: `Role names: ${(e as Error).message}, e.g. Customer=user.` };
  }
  for (const [name, role] of Object.entries(pairs)) {
    if (!ROLES.includes(role as (typeof ROLES)[number])) return { map, error: `Role names: "${role}" is not one of ${ROLES.join(', ')}.` };
    map[name] = role as (typeof ROLES)[number];
  }
  return { map, error: null };
}

/** The chat template the fields describe (empty fields are left to the defaults). */
export function chatTemplateOf(f: ChatFields): ChatTaskTemplate {
  const t: ChatTaskTemplate = { kind: 'chat' };
  if (f.format) t.format = f.format;
  const names = ['messagesField', 'roleField', 'contentField', 'instructionField', 'inputField', 'outputField'] as const;
  for (const k of names) if (f[k].trim()) t[k] = f[k].trim();
  const { map, error } = parseRoleMap(f.roleMap);
  if (!error && Object.keys(map).length) t.roleMap = map;
  if (f.systemPrompt.trim()) t.systemPrompt = f.systemPrompt;
  return t;
}

/** What the preview says under a rendered chat row (fallback template, replies split into sequences). */
export function chatNotes(r: RenderedChat): string[] {
  const notes: string[] = [];
  if (r.template === 'fallback') {
    notes.push("This model has no chat template: rows use Spillway's plain fallback (### User: / ### Assistant: headers, EOS after each reply).");
  }
  if (r.sequences.length > 1) {
    notes.push(
      `The template renders earlier replies differently once later turns follow, so each reply is trained as the model sees it when it writes it: ${r.sequences.length} sequences.`,
    );
  }
  return notes;
}
