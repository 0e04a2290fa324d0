// A CPU budget that streams every block of a model in fp32 and in bf16 alike,
// found by asking the plan (the planner's accounting of staging, I/O and
// read-ahead buffers differs per precision and may change): tests then compare
// the two precisions over the same placement.

/** The parts of a plan the search reads. */
export interface BudgetPlan {
  feasible: boolean;
  memory: { cpu: number };
  units: { kind: string; bytes: number; home: string }[];
}

export type PlanAt = (cpu: number | undefined, masters: 'fp32' | 'bf16') => Promise<BudgetPlan>;

/**
 * Searches down from everything resident, a quarter block at a time, for the first CPU budget under
 * which both precisions fit with every block on the SSD. Returns it with both plans.
 */
export async function allBlocksOnSsdBudget(planAt: PlanAt): Promise<{ cpu: number; fp32: BudgetPlan; bf16: BudgetPlan; block: number; blocks: number }> {
  const resident = await planAt(undefined, 'fp32');
  const blockUnits = resident.units.filter((u) => u.kind === 'block');
  const block = blockUnits[0].bytes;
  const allOnSsd = (p: BudgetPlan) => p.feasible && p.units.filter((u) => u.kind === 'block').every((u) => u.home === 'ssd');
  for (let k = 1; k <= 4 * blockUnits.length; k++) {
    const cpu = Math.floor(resident.memory.cpu - (k * block) / 4);
    const [fp32, bf16] = await Promise.all([planAt(cpu, 'fp32'), planAt(cpu, 'bf16')]);
    if (allOnSsd(fp32) && allOnSsd(bf16)) return { cpu, fp32, bf16, block, blocks: blockUnits.length };
  }
  throw new Error('no CPU budget puts every block on the SSD with fp32 and with bf16 masters');
}
