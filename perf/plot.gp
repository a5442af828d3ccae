# perf/plot.gp - throughput and p99 latency against connections (gnuplot 5).
#
#   gnuplot -e "datadir='perf/results/raw/plot'; outdir='perf/results'; \
#               scenarios='balance-uniform balance-hot transfer-uniform transfer-hot mix'" \
#           perf/plot.gp
#
# perf/run-all.sh writes, per scenario S, datadir/S.dat (the service) and
# datadir/static-S.dat (the same requests against the twin's static
# `return 200` locations), columns:
#   connections  requests/s  p50_ms  p99_ms
# and calls this script; it writes outdir/throughput.png and outdir/p99.png:
# one solid line per scenario, its HTTP ceiling dashed in the same colour.
# Optional: dbceil and dbhot (transfers/s of the database alone: the lean
# baseline, one procedure call per transfer, uniform; one transfer per
# transaction with the module's SQL, hot pair) draw horizontal lines on the
# throughput plot; title (a subtitle, e.g. the machine).

if (!exists("datadir"))   datadir = "perf/results/raw/plot"
if (!exists("outdir"))    outdir = "perf/results"
if (!exists("scenarios")) scenarios = "balance-uniform balance-hot transfer-uniform transfer-hot mix"
if (!exists("title"))     title = ""
if (!exists("dbceil"))    dbceil = 0
if (!exists("dbhot"))     dbhot = 0
colors = "#7b2cbf #009e73 #0072b2 #e69f00 #d62728 #8c564b #17becf #bcbd22 #e377c2 #7f7f7f"
color(i) = word(colors, (i - 1) % words(colors) + 1)

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1000,650 enhanced font "Sans,10"
} else {
    set terminal png size 1000,650
}

set grid
set key outside right top
set logscale x 2
set xlabel "connections (wrk -c)"
set logscale y
set format y "%g"
set style data linespoints

n = words(scenarios)
file(i) = sprintf("%s/%s.dat", datadir, word(scenarios, i))
static(i) = sprintf("%s/static-%s.dat", datadir, word(scenarios, i))

set output outdir . "/throughput.png"
set title "Throughput (solid: RBCS, dashed: static return 200 twin, same requests)" . (title ne "" ? "\n" . title : "")
set ylabel "requests/s (log)"
if (dbceil > 0) {
    set arrow 1 from graph 0, first dbceil to graph 1, first dbceil nohead dt 3 lw 2 lc rgb "black"
    set label 1 sprintf("lean baseline (database alone, one procedure call per transfer), uniform: %.0f transfers/s", dbceil) at graph 0.02, first dbceil offset 0,0.7
}
if (dbhot > 0) {
    set arrow 2 from graph 0, first dbhot to graph 1, first dbhot nohead dt 3 lw 1 lc rgb "gray40"
    set label 2 sprintf("database alone, one transfer per transaction (module's SQL), hot pair: %.0f transfers/s", dbhot) at graph 0.02, first dbhot offset 0,-0.9
}
plot for [i=1:n] file(i) using 1:2 title word(scenarios, i) lw 2 pt 7 lc rgb color(i), \
     for [i=1:n] static(i) using 1:2 title "static ".word(scenarios, i) dt 2 lw 1 pt 6 lc rgb color(i)

unset arrow
unset label
set output outdir . "/p99.png"
set title "p99 latency (solid: RBCS, dashed: static twin)" . (title ne "" ? "\n" . title : "")
set ylabel "p99 latency, ms (log)"
plot for [i=1:n] file(i) using 1:4 title word(scenarios, i) lw 2 pt 7 lc rgb color(i), \
     for [i=1:n] static(i) using 1:4 title "static ".word(scenarios, i) dt 2 lw 1 pt 6 lc rgb color(i)

set output
