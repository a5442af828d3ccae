#!/usr/bin/perl

# The documentation (README.md, docs/), offline:
#
#   - every Graphviz source docs/diagrams/*.dot renders with dot, without an
#     error or a warning;
#   - every image in docs/diagrams (*.svg, *.png) has its source, and every
#     source its two images, each byte for byte what rendering the source
#     gives now (dot's output is deterministic: checked here by rendering
#     twice; were it not, the SVGs would be compared without comments and
#     ids, the PNGs by size); docs/diagrams/render.sh renders exactly them;
#   - every directive of the module's command table (ngx_rbcs_module.c) is
#     in the configuration reference of docs/architecture.md and in README's
#     Configuration table, and every variable the module adds is in the
#     reference;
#   - last: every link from README.md and docs/*.md to a local file (a
#     diagram, a source file, another document) points to a file that
#     exists.

use strict;
use warnings;

use File::Basename qw(basename dirname);
use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin, File::Spec->updir));
my $diagrams = "$root/docs/diagrams";
my $tmp = tempdir('rbcs-docs-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub slurp {
    my ($f) = @_;
    open(my $fh, '<:raw', $f) or die "$f: $!\n";
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub run {   # run(CMD...): (exit status, stdout + stderr)
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec { $cmd[0] } @cmd or do { print "cannot run $cmd[0]: $!\n"; exit 127 };
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub png_size {   # width and height from the IHDR chunk, or ()
    my ($data) = @_;
    return () unless length($data) >= 24
                     && substr($data, 0, 8) eq "\x89PNG\r\n\x1a\n"
                     && substr($data, 12, 4) eq 'IHDR';
    return unpack('NN', substr($data, 16, 8));
}

sub svg_normal {   # an SVG without comments and ids
    my ($s) = @_;
    $s =~ s/<!--.*?-->//gs;
    $s =~ s/\s(?:id|xlink:href)="[^"]*"//g;
    return $s;
}

# --- the diagrams --------------------------------------------------------

my ($rc, $out) = run('dot', '-V');
ok($rc == 0, 'dot is installed (Debian package graphviz, conf/stack.sh deps)')
    or BAIL_OUT("dot not found: $out");

opendir(my $dh, $diagrams) or die "$diagrams: $!\n";
my @entries = sort readdir $dh;
closedir $dh;

my @sources = grep { /\.dot\z/ } @entries;
my @images = grep { /\.(?:svg|png)\z/ } @entries;

ok(@sources >= 4, 'docs/diagrams holds the Graphviz sources')
    or diag "found: @sources";

for my $name (qw(components transfer-path read-path deployment)) {
    ok(-f "$diagrams/$name.dot", "docs/diagrams/$name.dot exists");
}

for my $image (@images) {
    (my $src = $image) =~ s/\.(?:svg|png)\z/.dot/;
    ok(-f "$diagrams/$src", "docs/diagrams/$image has its source $src");
}

for my $src (@sources) {
    (my $name = $src) =~ s/\.dot\z//;

    my %fresh;

    for my $fmt (qw(svg png)) {
        my @r;

        for my $n (1, 2) {
            my $o = "$tmp/$name.$n.$fmt";
            ($rc, $out) = run('dot', "-T$fmt", "$diagrams/$src", '-o', $o);
            push @r, { rc => $rc, out => $out, data => -f $o ? slurp($o) : '' };
        }

        ok($r[0]{rc} == 0 && $r[0]{out} eq '' && length $r[0]{data},
           "$src renders to $fmt without an error or a warning")
            or diag "dot exit $r[0]{rc}: $r[0]{out}";

        $fresh{$fmt} = $r[0]{data};
        $fresh{"$fmt-deterministic"} = ($r[0]{data} eq $r[1]{data});
    }

    my $svg = "$diagrams/$name.svg";
    my $png = "$diagrams/$name.png";

    ok(-f $svg, "docs/diagrams/$name.svg exists") or next;
    ok(-f $png, "docs/diagrams/$name.png exists") or next;

    my $hint = 'run docs/diagrams/render.sh and commit the images with the source';

    if ($fresh{'svg-deterministic'}) {
        ok(slurp($svg) eq $fresh{svg},
           "$name.svg is up to date with $src (byte for byte)")
            or diag $hint;

    } else {
        diag "dot's SVG output varies from one run to the next: comparing "
             . 'without comments and ids';
        ok(svg_normal(slurp($svg)) eq svg_normal($fresh{svg}),
           "$name.svg is up to date with $src (comments and ids aside)")
            or diag $hint;
    }

    if ($fresh{'png-deterministic'}) {
        ok(slurp($png) eq $fresh{png},
           "$name.png is up to date with $src (byte for byte)")
            or diag $hint;

    } else {
        diag "dot's PNG output varies from one run to the next: comparing sizes";
        my @have = png_size(slurp($png));
        my @want = png_size($fresh{png});
        ok(@have && "@have" eq "@want",
           "$name.png is up to date with $src (same size: @want)")
            or diag $hint;
    }
}

# render.sh renders every source, to the same bytes as dot here
($rc, $out) = run("$diagrams/render.sh", "$tmp/render");
is($rc, 0, 'docs/diagrams/render.sh OUTDIR succeeds') or diag $out;

for my $src (@sources) {
    (my $name = $src) =~ s/\.dot\z//;
    for my $fmt (qw(svg png)) {
        my $f = "$tmp/render/$name.$fmt";
        ok(-f $f && -f "$diagrams/$name.$fmt"
           && slurp($f) eq slurp("$diagrams/$name.$fmt"),
           "render.sh gives docs/diagrams/$name.$fmt as committed");
    }
}

# --- the configuration reference -----------------------------------------

my $module = slurp("$root/ngx_rbcs_module.c");

my ($table) = $module =~ /ngx_command_t\s+ngx_rbcs_commands\[\]\s*=\s*\{(.*?)ngx_null_command/s;
ok(defined $table, 'ngx_rbcs_module.c: the command table is found')
    or BAIL_OUT('no ngx_rbcs_commands[] in ngx_rbcs_module.c');

my @directives = $table =~ /ngx_string\("([a-z_]+)"\)/g;
ok(@directives >= 20, scalar(@directives) . ' directives in the command table');

my ($vars) = $module =~ /ngx_http_variable_t\s+ngx_rbcs_vars\[\]\s*=\s*\{(.*?)ngx_http_null_variable/s;
my @variables = defined $vars ? $vars =~ /ngx_string\("([a-z_]+)"\)/g : ();
ok(@variables >= 1, scalar(@variables) . ' variables added by the module');

sub section {   # the text of a "## Title" section of a Markdown file
    my ($file, $title) = @_;
    my $text = slurp($file);
    my ($s) = $text =~ /^##[ \t]+\Q$title\E[ \t]*\n(.*?)(?=^##[ \t]|\z)/ms;
    return $s;
}

my $reference = section("$root/docs/architecture.md", 'Configuration reference');
ok(defined $reference, 'docs/architecture.md has a "Configuration reference" section')
    or $reference = '';

my $readme_conf = section("$root/README.md", 'Configuration');
ok(defined $readme_conf, 'README.md has a "Configuration" section')
    or $readme_conf = '';

for my $d (@directives) {
    ok($reference =~ /`\Q$d\E[\s;`]/,
       "directive $d is in the configuration reference (docs/architecture.md)");
    ok($readme_conf =~ /`\Q$d\E[\s;`]/,
       "directive $d is in README's Configuration table");
}

for my $v (@variables) {
    ok($reference =~ /`\$\Q$v\E`/,
       "variable \$$v is in the configuration reference (docs/architecture.md)");
}

# --- links to local files (last) -----------------------------------------

opendir($dh, "$root/docs") or die "$root/docs: $!\n";
my @docs = ('README.md', map { "docs/$_" } sort grep { /\.md\z/ } readdir $dh);
closedir $dh;

for my $doc (qw(docs/architecture.md docs/runbook.md)) {
    ok(-f "$root/$doc", "$doc exists");
}

my $checked = 0;

for my $doc (@docs) {
    my $text = slurp("$root/$doc");
    my $dir = dirname("$root/$doc");
    my ($fence, $line) = ('', 0);

    for my $l (split /\n/, $text) {
        $line++;

        # fenced code blocks and code spans hold no links
        if ($l =~ /^\s*(```|~~~)/) {
            $fence = $fence ? '' : $1;
            next;
        }
        next if $fence;
        $l =~ s/(`+).*?\1//g;

        my @targets;
        push @targets, $l =~ /\]\(\s*<?([^()\s<>]+)>?(?:\s+"[^"]*")?\s*\)/g;
        push @targets, $l =~ /^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/;
        push @targets, $l =~ /\b(?:src|href)="([^"]+)"/g;

        for my $t (@targets) {
            next if $t =~ /^[a-z][a-z0-9+.-]*:/i;    # http:, https:, mailto:
            next if $t =~ /^#/;                      # within the document
            (my $path = $t) =~ s/[#?].*//s;
            $path =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
            my $abs = $path =~ m{^/} ? "$root$path" : "$dir/$path";
            $checked++;
            ok(-e $abs, "$doc:$line: link to $t: the file exists");
        }
    }
}

ok($checked >= 10, "$checked links to local files checked in @docs");

done_testing();
