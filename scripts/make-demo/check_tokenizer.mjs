// Encode texts with the JS tokenizer the app uses (@huggingface/tokenizers) and
// write the ids, one JSON array per line, for comparison with the Python side.
// usage: node scripts/make-demo/check_tokenizer.mjs <texts.jsonl> <out.jsonl>
import { Tokenizer } from '@huggingface/tokenizers';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, '..', '..', 'resources', 'models', 'spillway-demo');
const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
  JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
const [inp, outp] = process.argv.slice(2);
const lines = fs.readFileSync(inp, 'utf8').split('\n').filter((l) => l.length);
const out = lines.map((l) => JSON.stringify(tok.encode(JSON.parse(l)).ids));
fs.writeFileSync(outp, out.join('\n') + '\n');
console.log(`encoded ${lines.length} texts; " great" -> ${JSON.stringify(tok.encode(' great', { add_special_tokens: false }).ids)}, " terrible" -> ${JSON.stringify(tok.encode(' terrible', { add_special_tokens: false }).ids)}; decode roundtrip: ${JSON.stringify(tok.decode(tok.encode('The film was great. It was terrible!').ids, { skip_special_tokens: true }))}`);
