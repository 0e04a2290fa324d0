// Generation-based evaluation of prompt/answer data: the exact match and token
// F1 of the generated answers, beside the loss and accuracy of each evaluation.
// Nullable: evaluations without generated answers (and those recorded before) have none.
import type { Migration } from './types.js';

export const migration005: Migration = {
  version: 5,
  name: 'eval exact match and F1',
  up(db) {
    db.exec(`
      ALTER TABLE eval_metrics ADD COLUMN exact_match REAL;
      ALTER TABLE eval_metrics ADD COLUMN f1 REAL;
    `);
  },
};
