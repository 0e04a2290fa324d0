// The distributed layer on real Open MPI: run under mpirun with 2 or more ranks (tests/native/dist.test.ts).
//
// usage: dist_ops layout                       pure checks of the step layout, no MPI
//        mpirun -n N dist_ops exchange         every rank receives every contribution, in rank order;
//                                              the step layout's pack/assemble through it, for every
//                                              way N ranks form perturbation groups
//        mpirun -n N dist_ops all-gather       in-place slices of 3 MB from every rank
//        mpirun -n N dist_ops bench BYTES ITERS  the exchange's own cost: ITERS exchanges of BYTES per
//                                              rank back to back; rank 0 prints the median and p90 in us
//        mpirun -n N dist_ops late RANK SECONDS TIMEOUT
//                                              RANK arrives SECONDS late at an exchange with TIMEOUT:
//                                              the waiting ranks print the DistError and rank 0 aborts
// Prints "ok <what>" lines and "FAIL <what>" lines; exit status 1 on a failure.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dist/comm.h"
#include "dist/layout.h"

using namespace spw::dist;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok" : "FAIL", what.c_str());
    std::fflush(stdout);
    if (!ok) failures++;
}

// A loss no two (perturbation, example, sign) share.
double loss_of(int j, int e, int sign) { return sign * (1000.0 * j + e + 0.25); }

// Rank r's losses under layout l: its perturbations (rows) on its examples (columns).
void rank_losses(const StepLayout& l, int r, int q, int B, std::vector<std::vector<double>>& p, std::vector<std::vector<double>>& m) {
    auto [j0, j1] = l.perturbations(l.group(r), q);
    auto [e0, e1] = l.examples(l.shard(r), B);
    p.clear();
    m.clear();
    for (int j = j0; j < j1; j++) {
        p.emplace_back();
        m.emplace_back();
        for (int e = e0; e < e1; e++) {
            p.back().push_back(loss_of(j, e, 1));
            m.back().push_back(loss_of(j, e, -1));
        }
    }
}

void layout_checks() {
    StepLayout l = StepLayout::make(6, 3);
    expect(l.shards == 2 && l.group(5) == 2 && l.shard(5) == 1, "6 ranks in 3 groups of 2");
    expect(l.perturbations(1, 6) == std::make_pair(2, 4), "group 1 computes perturbations 2 and 3 of 6");
    // Shards of 5 examples over 2: 0..2 and 2..5 (sizes differ by at most one, contiguous).
    expect(l.examples(0, 5) == std::make_pair(0, 2) && l.examples(1, 5) == std::make_pair(2, 5), "5 examples in 2 shards");
    bool threw = false;
    try {
        l.check(4, 8);
    } catch (const std::exception& e) {
        threw = std::string(e.what()).find("multiple of 3") != std::string::npos;
    }
    expect(threw, "q = 4 over 3 groups is refused, naming the multiple");
    threw = false;
    try {
        StepLayout::make(4, 1).check(1, 3);
    } catch (const std::exception& e) {
        threw = std::string(e.what()).find("smaller than the 4") != std::string::npos;
    }
    expect(threw, "a global batch of 3 over 4 shards is refused");
    threw = false;
    try {
        StepLayout::make(4, 3);
    } catch (const std::exception&) {
        threw = true;
    }
    expect(threw, "4 ranks cannot form 3 groups");
    // Pack/assemble without a transport: contributions laid side by side.
    StepLayout two = StepLayout::make(4, 2);
    int q = 4, B = 7;
    std::vector<double> all(two.contribution(q, B) * 4);
    for (int r = 0; r < 4; r++) {
        std::vector<std::vector<double>> p, m;
        rank_losses(two, r, q, B, p, m);
        RankTimes t;
        t.forward_ms = r + 0.5;
        two.pack(r, q, B, t, p, m, all.data() + (size_t)r * two.contribution(q, B));
    }
    std::vector<std::vector<double>> p, m;
    std::vector<RankTimes> times;
    two.assemble(q, B, all.data(), p, m, times);
    bool same = true;
    for (int j = 0; j < q; j++)
        for (int e = 0; e < B; e++) same &= p[(size_t)j][(size_t)e] == loss_of(j, e, 1) && m[(size_t)j][(size_t)e] == loss_of(j, e, -1);
    expect(same && times[3].forward_ms == 3.5, "2 groups x 2 shards: every loss back in its place");
}

void exchange_checks(Comm& c) {
    const int n = c.size(), me = c.rank();
    std::vector<int64_t> mine = {me, (int64_t)me * 1000 + 7, c.self().pid};
    std::vector<int64_t> all(mine.size() * (size_t)n);
    c.exchange(mine.data(), mine.size() * sizeof(int64_t), all.data(), 30, "a test exchange");
    bool ok = true;
    for (int r = 0; r < n; r++) ok &= all[(size_t)r * 3] == r && all[(size_t)r * 3 + 1] == r * 1000 + 7 && all[(size_t)r * 3 + 2] == c.info(r).pid;
    expect(ok, "rank " + std::to_string(me) + ": every contribution in rank order");
    int local = 0;
    for (int r = 0; r < n; r++) local += c.info(r).host == c.self().host;
    expect(c.self().local_size == local && c.self().local_rank < local, "local rank " + std::to_string(c.self().local_rank) + " of " + std::to_string(local));
    // The step layout through the real transport, for every number of groups.
    for (int groups = 1; groups <= n; groups++) {
        if (n % groups) continue;
        StepLayout l = StepLayout::make(n, groups);
        int q = 2 * groups, B = 3 * l.shards + 1;
        std::vector<std::vector<double>> p, m;
        rank_losses(l, me, q, B, p, m);
        auto [e0, e1] = l.examples(l.shard(me), B);
        RankTimes t;
        t.compute_ms = 10.0 + me;
        t.examples = e1 - e0;
        std::vector<double> out(l.contribution(q, B)), gathered(out.size() * (size_t)n);
        l.pack(me, q, B, t, p, m, out.data());
        c.exchange(out.data(), out.size() * sizeof(double), gathered.data(), 30, "step losses");
        std::vector<RankTimes> times;
        l.assemble(q, B, gathered.data(), p, m, times);
        bool same = true;
        int examples = 0;
        for (int j = 0; j < q; j++)
            for (int e = 0; e < B; e++) same &= p[(size_t)j][(size_t)e] == loss_of(j, e, 1) && m[(size_t)j][(size_t)e] == loss_of(j, e, -1);
        for (int r = 0; r < n; r++) {
            same &= times[(size_t)r].compute_ms == 10.0 + r;
            examples += (int)times[(size_t)r].examples;
        }
        expect(same && examples == B * groups,
               "rank " + std::to_string(me) + ", " + std::to_string(groups) + " group(s): losses of q=" + std::to_string(q) +
                   " on B=" + std::to_string(B) + " assembled");
    }
}

void all_gather_checks(Comm& c) {
    const size_t slice = 3 * 1000 * 1000 + 5;  // bytes, not a round number
    std::vector<unsigned char> buf(slice * (size_t)c.size(), 0);
    for (size_t i = 0; i < slice; i++) buf[(size_t)c.rank() * slice + i] = (unsigned char)((i * 31 + (size_t)c.rank() * 7) & 0xff);
    c.all_gather({}, buf.data(), slice, 30, "test slices");
    bool ok = true;
    for (int r = 0; r < c.size(); r++)
        for (size_t i = 0; i < slice; i++) ok &= buf[(size_t)r * slice + i] == (unsigned char)((i * 31 + (size_t)r * 7) & 0xff);
    expect(ok, "rank " + std::to_string(c.rank()) + ": every slice in place");
}

void late(Comm& c, int late_rank, double seconds, double timeout) {
    c.set_grace(1.0);
    if (c.rank() == late_rank) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    double x = c.rank(), all[64];
    auto t0 = std::chrono::steady_clock::now();
    try {
        c.exchange(&x, sizeof x, all, timeout, "the late test's exchange");
        expect(true, "rank " + std::to_string(c.rank()) + ": exchange completed");
    } catch (const DistError& e) {
        double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::string named;
        for (int r : e.ranks()) named += " " + std::to_string(r);
        std::printf("rank %d: DistError after %.2f s naming%s: %s\n", c.rank(), waited, named.c_str(), e.what());
        std::fflush(stdout);
        c.abort(3);
    }
}

void bench(Comm& c, size_t bytes, int iters) {
    std::vector<char> mine(bytes, (char)c.rank()), all(bytes * (size_t)c.size());
    std::vector<double> us;
    for (int i = 0; i < iters + 50; i++) {
        auto t0 = std::chrono::steady_clock::now();
        c.exchange(mine.data(), bytes, all.data(), 30, "a benchmark exchange");
        double t = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        if (i >= 50) us.push_back(t);  // the first 50 warm the connections up
    }
    std::sort(us.begin(), us.end());
    if (c.rank() == 0)
        std::printf("exchange %zu bytes x %d ranks: median %.1f us, p90 %.1f us, min %.1f us (%d exchanges)\n", bytes, c.size(),
                    us[us.size() / 2], us[us.size() * 9 / 10], us.front(), iters);
}

}  // namespace

int main(int argc, char** argv) {
    std::string what = argc > 1 ? argv[1] : "";
    if (what == "layout") {
        layout_checks();
        std::printf("%d failed\n", failures);
        return failures ? 1 : 0;
    }
    Comm& c = Comm::world(30);
    if (what == "exchange") exchange_checks(c);
    else if (what == "all-gather") all_gather_checks(c);
    else if (what == "bench" && argc == 4) bench(c, (size_t)std::atoll(argv[2]), std::atoi(argv[3]));
    else if (what == "late" && argc == 5) late(c, std::atoi(argv[2]), std::atof(argv[3]), std::atof(argv[4]));
    else {
        std::fprintf(stderr, "usage: dist_ops layout | exchange | all-gather | bench BYTES ITERS | late RANK SECONDS TIMEOUT\n");
        return 2;
    }
    std::printf("rank %d: %d failed\n", c.rank(), failures);
    c.finalize();
    return failures ? 1 : 0;
}
