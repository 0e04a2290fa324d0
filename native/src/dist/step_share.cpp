#include "dist/step_share.h"

#include <stdexcept>
#include <string>

namespace spw::dist {

void make_shared_step(SharedStep& out, Comm& comm, const StepLayout& layout, int q, int global_examples, int examples, int tokens,
                      double timeout_s) {
    if (layout.ranks != comm.size())
        throw std::runtime_error("the step is laid out for " + std::to_string(layout.ranks) + " ranks; the job has " +
                                 std::to_string(comm.size()));
    layout.check(q, global_examples);
    const int r = comm.rank();
    auto [e0, e1] = layout.examples(layout.shard(r), global_examples);
    if (examples != e1 - e0)
        throw std::runtime_error("rank " + std::to_string(r) + " was given " + std::to_string(examples) + " examples; its shard of " +
                                 std::to_string(global_examples) + " holds " + std::to_string(e1 - e0));
    auto [j0, j1] = layout.perturbations(layout.group(r), q);
    out.share.first = j0;
    out.share.count = j1 - j0;
    SharedStep* self = &out;
    out.share.exchange = [self, &comm, layout, q, global_examples, examples, tokens, timeout_s](
                             std::vector<std::vector<double>>& plus, std::vector<std::vector<double>>& minus, const PhaseTimes& t) {
        RankTimes mine;
        mine.forward_ms = t.forward_ms;
        mine.io_ms = t.io_ms;
        mine.noise_ms = t.noise_ms;
        mine.head_ms = t.head_ms;
        mine.compute_ms = t.total_ms;
        mine.examples = examples;
        mine.tokens = tokens;
        size_t n = layout.contribution(q, global_examples);
        std::vector<double> send(n), all(n * (size_t)comm.size());
        layout.pack(comm.rank(), q, global_examples, mine, plus, minus, send.data());
        comm.exchange(send.data(), n * sizeof(double), all.data(), timeout_s, "the losses of a step");
        layout.assemble(q, global_examples, all.data(), plus, minus, self->ranks);
    };
}

}  // namespace spw::dist
