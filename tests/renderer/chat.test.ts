import { describe, expect, it } from 'vitest';

import { chatNotes, chatTemplateOf, emptyChatFields, parseRoleMap } from '../../renderer/src/lib/chat.ts';

describe('chat fields', () => {
  it('leaves empty fields to the defaults', () => {
    expect(chatTemplateOf(emptyChatFields())).toEqual({ kind: 'chat' });
  });

  it('maps typed field names, role names and a system prompt', () => {
    const f = { ...emptyChatFields(), format: 'messages' as const, messagesField: ' dialog ', roleField: 'speaker', roleMap: 'Customer=user, Agent = assistant', systemPrompt: 'Be kind.' };
    expect(chatTemplateOf(f)).toEqual({ kind: 'chat', format: 'messages', messagesField: 'dialog', roleField: 'speaker', roleMap: { Customer: 'user', Agent: 'assistant' }, systemPrompt: 'Be kind.' });
  });

  it('says what is wrong with a role map', () => {
    expect(parseRoleMap('Customer').error).toMatch(/write name=role/);
    expect(parseRoleMap('Agent=robot').error).toMatch(/"robot" is not one of system, user, assistant, tool/);
    expect(parseRoleMap('a=b=user').map).toEqual({ 'a=b': 'user' });
  });

  it('notes the fallback template and replies split into sequences', () => {
    const seq = { replies: [2], pieces: [], tokens: 3, trainedTokens: 1 };
    expect(chatNotes({ kind: 'chat', template: 'model', templateFile: '/m/tokenizer_config.json', messages: 2, sequences: [seq] })).toEqual([]);
    const notes = chatNotes({ kind: 'chat', template: 'fallback', templateFile: null, messages: 4, sequences: [seq, { ...seq, replies: [4] }] });
    expect(notes[0]).toMatch(/no chat template/);
    expect(notes[1]).toMatch(/2 sequences/);
  });
});
