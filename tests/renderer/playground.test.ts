import { describe, expect, it } from 'vitest';

import { finishWords, messagesOf, sourceKey, sourceOf } from '../../renderer/src/lib/playground.ts';

describe('Playground conversations', () => {
  it('sends the system turn, then the turns so far, never a reply still being written', () => {
    const turns = [
      { role: 'user' as const, content: 'Hi' },
      { role: 'assistant' as const, content: 'Hello.', finish: 'eos' as const },
      { role: 'user' as const, content: 'And?' },
      { role: 'assistant' as const, content: 'An', pending: true },
    ];
    expect(messagesOf('  ', turns)).toEqual([
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'And?' },
    ]);
    expect(messagesOf('Be brief.', turns.slice(0, 1))).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ]);
  });

  it('reads a model list entry back into what it names', () => {
    for (const s of [{ model: '/models/a:b' }, { runId: 'r-1' }]) expect(sourceOf(sourceKey(s))).toEqual(s);
    expect(sourceOf('')).toBeNull();
    expect(sourceOf('run:')).toBeNull();
    expect(sourceOf('other:x')).toBeNull();
  });

  it('says why a reply ended, except at the model\'s own end', () => {
    expect(finishWords('eos')).toBe('');
    expect(finishWords('length')).toMatch(/token limit/);
    expect(finishWords('stopped')).toBe('stopped');
  });
});
