package RBCS::Resilience;

# The core of the resilience suite (t/170-resilience.t, perf/resilience.pl):
# forked clients making transfers against one or more pods while faults are
# injected, the audits after each fault, the recovery probe, the overload
# flood and the graceful reload/stop checks.
#
#   my $r = RBCS::Resilience->new(dir => $scratch, pods => [$t1, $t2],
#                                 mariadb => $m, redis => $redis);
#   $r->open_accounts;
#   $r->start_load;
#   my $f = $r->fault('MariaDB SIGKILL + restart', sub { ... });
#   $r->stop_load;
#
# The clients' traffic is a mix: plain transfers between STANDARD accounts
# (some of which have an overdraft limit), deposits from the EXTERNAL
# account and withdrawals to it, and holds (some expiring after a second or
# two, some not) that the client later captures (whole or in part) or
# voids, or leaves to expire.
#
# Every request a process of the suite sends is written to a record file
# of its own under dir (rec.<name>): "A" lines for attempts, "F" lines for
# the final outcome of a transfer or hold the client saw, "C" lines for the
# final outcome of a capture or void, "X" lines for requests the client
# aborted on purpose.  The audit loads the final outcomes into tables of
# the service's database and checks them against accounts, transactions,
# holds, entries and audit_log in SQL.  Real clients retry an unknown
# outcome (503, no answer) with the same request: so do these.

use strict;
use warnings;

use Carp qw(croak);
use Errno ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use List::Util qw(max min sum shuffle);
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Time::Local ();

use RBCS::Test;

my $JSON = JSON::PP->new->utf8->canonical;

# ------------------------------------------------------------ construction --

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir        => $o{dir} // croak('dir'),
        pods       => $o{pods} // croak('pods'),
        mariadb    => $o{mariadb},
        redis      => $o{redis},
        naccounts  => $o{accounts} // 12,
        initial    => $o{initial} // '100.00',
        clients    => $o{clients} // 6,
        give_up    => $o{give_up} // 60,     # a client's patience for one id
        max_cents  => $o{max_cents} // 3000,  # amounts 0.01 .. 30.00
        read_every => $o{read_every} // 3,    # read-your-writes check
        attempt_timeout => $o{attempt_timeout} // 8,
        ttl        => $o{ttl} // 2,           # the cache zone's ttl
        # the clients' traffic: shares of plain transfers, deposits (from
        # the EXTERNAL account), withdrawals (to it) and holds
        mix        => { transfer => 0.60, deposit => 0.08, withdrawal => 0.08,
                        hold => 0.24, %{ $o{mix} // {} } },
        hold_expiry => $o{hold_expiry} // 0.4,  # share of holds with expiresIn
        expires_in => $o{expires_in} // [1, 2], # their expiresIn, seconds
        resolve_within => $o{resolve_within} // 1.5, # capture/void delay
        limit      => $o{limit} // '50.00',   # overdraft limit of every
        limit_every => $o{limit_every} // 3,  # limit_every-th account
        external   => $o{external} // 'EXT',
        log        => $o{log} // sub { print STDERR @_, "\n" },
        faults     => [],
        probe_seq  => 0,
        gen        => 0,
    }, $class;
    mkdir $self->{dir};
    -d $self->{dir} or croak "$self->{dir}: $!";
    $self->{accounts} = [ map { sprintf 'R%02d', $_ } 1 .. $self->{naccounts} ];
    return $self;
}

sub faults   { @{ $_[0]{faults} } }
sub accounts { @{ $_[0]{accounts} } }

# the overdraft limit of a STANDARD account of the clients ('0.00': none)
sub limit_of {
    my ($self, $n) = @_;
    my ($i) = $n =~ /(\d+)$/;
    return $self->{limit_every} && $i && $i % $self->{limit_every} == 0
        ? $self->{limit} : '0.00';
}

sub msg { my $self = shift; $self->{log}->(join '', @_) }

sub pod_name {
    my ($self, $i) = @_;
    return 'pod' . ($i + 1);
}

# the accounts the clients move money between (STANDARD, every
# limit_every-th with an overdraft limit and nothing else), the EXTERNAL
# account of their
# deposits and withdrawals, the probe's and the abort fault's
sub open_accounts {
    my ($self) = @_;
    my $t = $self->{pods}[0];
    # (those with a limit open empty, so that they use it)
    my @open = ((map { my $l = $self->limit_of($_);
                       { accountNumber => $_, overdraftLimit => $l,
                         initialBalance => $l > 0 ? '0.00' : $self->{initial} } }
                     $self->accounts),
                { accountNumber => $self->{external}, kind => 'EXTERNAL' },
                map { { accountNumber => $_, initialBalance => '1000000.00' } }
                    qw(PA PB XA XB));
    for my $a (@open) {
        my $r = $t->post_json('/accounts', $a);
        croak "opening $a->{accountNumber}: $r->{status} $r->{body}"
            unless ($r->{status} // 0) == 201 || ($r->{status} // 0) == 200;
    }
    return $self;
}

# ------------------------------------------------------------ one transfer --

# %x: hold => 1 and expires_in => N make it a hold
sub transfer_body {
    my ($id, $src, $dst, $amount, %x) = @_;
    return $JSON->encode({ transactionId => $id, sourceAccountNumber => $src,
                           destinationAccountNumber => $dst,
                           amount => $amount,
                           $x{hold} ? (hold => JSON::PP::true) : (),
                           defined $x{expires_in} ? (expiresIn => 0 + $x{expires_in}) : () });
}

# one POST on one pod: { status (0: no answer), ra, json, t0, t1, err }
sub post_attempt {
    my ($self, $pod, $path, $body, $timeout) = @_;
    my $t = $self->{pods}[$pod];
    my $t0 = time;
    my $r = eval {
        $t->request('POST', $path, body => $body,
            headers => { 'Content-Type' => 'application/json' },
            timeout => $timeout // $self->{attempt_timeout});
    };
    my $err = $@;
    my $res = { t0 => $t0, t1 => time, pod => $pod,
                status => ($r && $r->{status}) ? $r->{status} : 0 };
    if ($res->{status}) {
        $res->{ra} = $r->{headers}{'retry-after'};
        $res->{worker} = $r->{headers}{'x-rbcs-worker'};
        $res->{json} = eval { $JSON->decode($r->{body}) };
        $res->{body} = $r->{body};
    } else {
        $err =~ s/\s+\z// if defined $err;
        $res->{err} = $err || 'connection closed without an answer';
    }
    return $res;
}

# one transfer (or hold, %x) attempt on one pod
sub attempt {
    my ($self, $pod, $id, $src, $dst, $amount, $timeout, %x) = @_;
    return $self->post_attempt($pod, '/accounts/transactions',
        transfer_body($id, $src, $dst, $amount, %x), $timeout);
}

# one capture or void attempt: $amount undef captures the whole hold
sub resolve_attempt {
    my ($self, $pod, $id, $action, $amount, $timeout) = @_;
    return $self->post_attempt($pod, "/accounts/transactions/$id/$action",
        $JSON->encode(defined $amount ? { amount => $amount } : {}), $timeout);
}

# RFC 3339 UTC with milliseconds to seconds since the epoch
sub _epoch {
    my ($s) = @_;
    my ($y, $mo, $d, $h, $mi, $sec, $ms) = ($s // '')
        =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z\z/
        or return undef;
    return Time::Local::timegm($sec, $mi, $h, $d, $mo - 1, $y)
        + ($ms ? "0.$ms" : 0);
}

# Wait before the next attempt of a request whose outcome is not known.
# Retry-After is 1 s; the suite waits a third of it, jittered, to keep the
# run short (it retries the same request either way).
sub _retry_pause { sleep($_[0] ? 0.25 + rand(0.25) : 0.05 + rand(0.1)) }

# the answer that asks for the same request again: a 503 (or 429) must say
# when, with Retry-After; anything else but no answer is unexpected
sub _check_retry {
    my ($fh, $label, $res) = @_;
    my $s = $res->{status};
    if ($s == 503 || $s == 429) {
        print $fh "P\t$label: $s without Retry-After\n"
            unless defined $res->{ra} && $res->{ra} =~ /^\d+$/;
    } elsif ($s != 0) {
        print $fh "P\t$label: unexpected $s: "
            . substr($res->{body} // '', 0, 200) . "\n";
    }
}

# Send ($send->($pod): one attempt) until $final->($res, $n) says the
# outcome (undef: not final yet), on pod $o{pod} or any; past give_up
# seconds it stays UNKNOWN.  Writes an A line for each attempt (labelled
# $label), P lines for unexpected answers.  Returns the last answer, the
# outcome, the attempts, the start and whether an earlier attempt's
# outcome was unknown.
sub _until_final {
    my ($self, $fh, $label, $send, $final, %o) = @_;
    my $npods = @{ $self->{pods} };
    my $start = time;
    my $give_up = $o{give_up} // $self->{give_up};
    my ($n, $uncertain) = (0, 0);
    while (1) {
        my $pod = $o{pod} // int rand $npods;
        my $res = $send->($pod);
        printf $fh "A\t%s\t%d\t%d\t%.4f\t%.4f\n", $label, $pod, $res->{status},
            $res->{t0}, $res->{t1};
        my $outcome = $final->($res, ++$n);
        return ($res, $outcome, $n, $start, $uncertain) if defined $outcome;
        _check_retry($fh, $label, $res);
        $uncertain = 1;
        return ($res, 'UNKNOWN', $n, $start, $uncertain) if time - $start > $give_up;
        _retry_pause($res->{status});
    }
}

# Send a transfer (or a hold: hold => 1, expires_in => N) until its outcome
# is known, as a real client does: 201/200 COMPLETED (PENDING for a hold)
# and 422/404 REJECTED are final; a 503 (Retry-After) or a connection that
# broke without an answer is retried with the same id, on any pod; past
# give_up seconds the outcome stays UNKNOWN.  Writes A and F lines to $fh
# (the outcome COMPLETED means acknowledged, for a hold too), problems as
# P lines.  kind: T transfer, D deposit, W withdrawal, H hold.
sub transfer_final {
    my ($self, $fh, $id, $src, $dst, $amount, %o) = @_;
    my %x = (hold => $o{hold}, expires_in => $o{hold} ? $o{expires_in} : undef);
    my $kind = $o{kind} // ($o{hold} ? 'H' : 'T');
    my ($res, $outcome, $n, $start) = $self->_until_final($fh, $id, sub {
        $self->attempt($_[0], $id, $src, $dst, $amount, $o{timeout}, %x);
    }, sub {
        my ($res, $n) = @_;
        my $s = $res->{status};
        if ($s == 201 || $s == 200) {
            my $j = $res->{json} // {};
            if (($j->{transactionId} // '') ne $id
                || ($j->{status} // '') ne ($o{hold} ? 'PENDING' : 'COMPLETED')
                || ($j->{amount} // '') ne $amount
                || ($o{hold} && (defined $j->{expiresAt}) != (defined $x{expires_in})))
            {
                print $fh "P\t$id: $s with an unexpected body: "
                    . substr($res->{body} // '', 0, 200) . "\n";
            }
            print $fh "P\t$id: the first attempt of a fresh id answered 200"
                . " (a replay)\n" if $s == 200 && $n == 1 && $o{fresh};
            return 'COMPLETED';
        }
        return 'REJECTED' if $s == 422 || $s == 404;
        return undef unless $s == 409;
        print $fh "P\t$id: 409 on a retry with the same fields: $res->{body}\n";
        return 'CONFLICT';
    }, %o);
    my $exp = $outcome eq 'COMPLETED' && $o{hold}
        ? _epoch(($res->{json} // {})->{expiresAt}) : undef;
    printf $fh "F\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.4f\t%.4f\t%d\t%s\t%s\t%s\n", $id,
        $src, $dst, $amount, $outcome, $res->{status}, $n, $start, $res->{t1},
        $res->{pod}, $kind, $x{expires_in} // '',
        defined $exp ? sprintf('%.3f', $exp) : '';
    return { outcome => $outcome, res => $res, attempts => $n,
             expires_at => $exp };
}

# Capture (whole: $amount undef; or part) or void an acknowledged hold
# ($h: id, amount, expires_at) until the answer is final, as
# transfer_final does: 200 DONE; 409 REFUSED (hold_not_pending: the hold
# expired, or a bug the audit finds from the database); a 503 or no answer
# is retried with the same request.  Writes A lines (id/action) and a C
# line: id, action, the amount sent ('' for none), the amount the capture
# must have moved, the outcome, the last status, the attempts, start, end,
# pod, whether an earlier attempt's outcome was unknown (a 503 or no
# answer: it may have applied), and whether a 409 came back before the
# hold's expiresAt (it cannot have expired).
sub resolve_final {
    my ($self, $fh, $h, $action, $amount, %o) = @_;
    my $id = $h->{id};
    my $expect = $action eq 'capture' ? $amount // $h->{amount} : '';
    my ($res, $outcome, $n, $start, $uncertain) = $self->_until_final($fh,
        "$id/$action", sub {
        $self->resolve_attempt($_[0], $id, $action, $amount, $o{timeout});
    }, sub {
        my ($res) = @_;
        my $s = $res->{status};
        if ($s == 200) {
            my $j = $res->{json} // {};
            if (($j->{transactionId} // '') ne $id
                || ($j->{status} // '') ne ($action eq 'capture' ? 'COMPLETED' : 'VOIDED')
                || ($j->{amount} // '') ne $h->{amount}
                || ($action eq 'capture' && ($j->{capturedAmount} // '') ne $expect))
            {
                print $fh "P\t$id/$action: 200 with an unexpected body: "
                    . substr($res->{body} // '', 0, 200) . "\n";
            }
            return 'DONE';
        }
        return 'REFUSED' if $s == 409;
        return undef unless $s == 422 || $s == 404 || $s == 400;
        print $fh "P\t$id/$action: $s: " . substr($res->{body} // '', 0, 200) . "\n";
        return 'ERROR';
    }, %o);
    my $early = $outcome eq 'REFUSED'
        && (!defined $h->{expires_at} || $res->{t1} < $h->{expires_at} - 0.001) ? 1 : 0;
    printf $fh "C\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.4f\t%.4f\t%d\t%d\t%d\n", $id,
        $action, $amount // '', $expect, $outcome, $res->{status}, $n, $start,
        $res->{t1}, $res->{pod}, $uncertain, $early;
    return { outcome => $outcome, res => $res, attempts => $n };
}

sub _open_rec {
    my ($self, $name) = @_;
    open my $fh, '>>', "$self->{dir}/rec.$name" or croak "rec.$name: $!";
    $fh->autoflush(1);
    return $fh;
}

sub ctl_fh {
    my ($self) = @_;
    return $self->{ctl_fh} //= $self->_open_rec("ctl-$$");
}

# ------------------------------------------------------------------ clients --

sub start_load {
    my ($self, %o) = @_;
    my $n = $o{clients} // $self->{clients};
    unlink glob("$self->{dir}/{stop,pause,paused.*}");
    my @pids;
    for my $k (1 .. $n) {
        my $pid = fork // croak "fork: $!";
        if ($pid == 0) {
            my $ok = eval { $self->_client($k); 1 };
            if (!$ok) {
                if (open my $fh, '>>', "$self->{dir}/rec.client$k") {
                    print $fh "P\tclient $k died: $@\n";
                }
            }
            POSIX::_exit($ok ? 0 : 1);
        }
        push @pids, $pid;
    }
    $self->{client_pids} = \@pids;
    $self->{nclients} = $n;
    return $self;
}

sub _cents { my ($c) = @_; sprintf '%d.%02d', int($c / 100), $c % 100 }

# the traffic of one client: see the top of this file
sub _client {
    my ($self, $k) = @_;
    srand($$ ^ int(time * 1000));
    my $fh = $self->_open_rec("client$k");
    my @acc = $self->accounts;
    my $ext = $self->{external};
    my $dir = $self->{dir};
    my %mix = %{ $self->{mix} };
    my $mix_total = sum(values %mix) || 1;
    my ($i, $acks) = (0, 0);
    my @plan;   # captures and voids to come: [ due, hold, action, amount ]
    my $other = sub {
        my ($src) = @_;
        my $dst;
        do { $dst = $acc[int rand @acc] } while $dst eq $src;
        return $dst;
    };
    while (!-e "$dir/stop") {
        if (-e "$dir/pause") {
            my $gen = RBCS::Test::_slurp("$dir/pause");
            _spew("$dir/paused.$k", $gen);
            sleep 0.02 while -e "$dir/pause" && !-e "$dir/stop";
            next;
        }
        my ($f, $src);
        if (@plan && $plan[0][0] <= time) {
            # a hold's capture (whole or in part) or void, when it is due
            my (undef, $h, $action, $amount) = @{ shift @plan };
            $src = $h->{src};
            $f = $self->resolve_final($fh, $h, $action, $amount);
            next unless $f->{outcome} eq 'DONE';
        } else {
            $i++;
            my $id = "c$k-$i";
            my $c = 1 + int rand $self->{max_cents};
            my $amount = _cents($c);
            my $r = rand($mix_total);
            my $what = $r < $mix{transfer} ? 'transfer'
                : ($r -= $mix{transfer}) < $mix{deposit} ? 'deposit'
                : ($r -= $mix{deposit}) < $mix{withdrawal} ? 'withdrawal'
                : 'hold';
            my $dst;
            if ($what ne 'hold') {
                # kind T, D or W; a transfer 4 % of the time to an unknown
                # account: a 404, recorded
                my $one = $acc[int rand @acc];
                ($src, $dst) = $what eq 'deposit' ? ($ext, $one)
                    : $what eq 'withdrawal' ? ($one, $ext)
                    : ($one, rand() < 0.04 ? 'NO-SUCH-ACCOUNT' : $other->($one));
                $f = $self->transfer_final($fh, $id, $src, $dst, $amount, fresh => 1,
                                           kind => uc substr($what, 0, 1));
            } else {
                # a hold between two STANDARD accounts, or from or to the
                # EXTERNAL one (a deposit's or a withdrawal's authorisation)
                my $r = rand;
                ($src, $dst) = $r < 0.1 ? ($ext, $acc[int rand @acc])
                             : $r < 0.2 ? ($acc[int rand @acc], $ext)
                             : do { my $s = $acc[int rand @acc]; ($s, $other->($s)) };
                my @ei = @{ $self->{expires_in} };
                my $ein = @ei && rand() < $self->{hold_expiry} ? $ei[int rand @ei] : undef;
                $f = $self->transfer_final($fh, $id, $src, $dst, $amount,
                    fresh => 1, hold => 1, expires_in => $ein);
                if ($f->{outcome} eq 'COMPLETED') {
                    my $h = { id => $id, src => $src, amount => $amount,
                              expires_at => $f->{expires_at} };
                    @plan = sort { $a->[0] <=> $b->[0] } @plan,
                        $self->_resolution($h, $c, $ein);
                }
            }
            next unless $f->{outcome} eq 'COMPLETED';
        }
        $self->_read_own_write($fh, $f->{res}, $src)
            unless ++$acks % $self->{read_every};
    }
    close $fh;
}

# What becomes of a client's acknowledged hold $h of $c cents (expiresIn
# $ein or none): [ when, $h, capture or void, the amount captured (undef:
# the whole) ], or nothing when it is left to expire
sub _resolution {
    my ($self, $h, $c, $ein) = @_;
    my $p = rand;
    if (defined $ein) {
        # half left to expire; the others captured or voided before or
        # after expiresAt (then refused: 409)
        my @a = $p < 0.5 ? () : $p < 0.65 ? ('capture')
              : $p < 0.8 ? ('capture', _cents(1 + int rand $c)) : ('void');
        return @a ? [ time + rand($ein + 0.5), $h, @a ] : ();
    }
    my @a = $p < 0.4 ? ('capture') : $p < 0.7
          ? ('capture', $c > 1 ? _cents(1 + int rand($c - 1)) : undef)
          : ('void');
    return [ time + rand $self->{resolve_within}, $h, @a ];
}

# read-your-writes: a balance read on the pod that acknowledged ($res)
# never shows an older version of the source account
sub _read_own_write {
    my ($self, $fh, $res, $src) = @_;
    my $v = $res->{json}{sourceVersion} // return;
    my $t = $self->{pods}[ $res->{pod} ];
    for (1 .. 10) {
        my $r = eval { $t->get("/accounts/$src/balance", timeout => 5) };
        if ($r && ($r->{status} // 0) == 200) {
            my $j = eval { $JSON->decode($r->{body}) } // {};
            print $fh "P\tread $src on pod" . ($res->{pod} + 1)
                . ": version $j->{version} < acknowledged $v ("
                . ($r->{headers}{'x-rbcs-cache'} // '?') . ")\n"
                if ($j->{version} // 0) < $v;
            print $fh "R\tok\n";
            return;
        }
        print $fh "R\tunavailable\n" if $_ == 10;
        sleep 0.1;
    }
}

# written whole, then renamed: a reader never sees it half written
sub _spew {
    my ($f, $s) = @_;
    RBCS::Test::_write("$f.tmp", $s);
    rename "$f.tmp", $f;
}

# wait until every client has finished its current transfer
sub pause {
    my ($self) = @_;
    return 0 unless $self->{client_pids};
    my $gen = ++$self->{gen};
    _spew("$self->{dir}/pause", $gen);
    my $t0 = time;
    my $deadline = $t0 + $self->{give_up} + 30;
    while (time < $deadline) {
        my $missing = grep {
            my $k = $_;
            RBCS::Test::_slurp("$self->{dir}/paused.$k") ne $gen
                && RBCS::Test::_alive($self->{client_pids}[$k - 1])
        } 1 .. $self->{nclients};
        return time - $t0 unless $missing;
        sleep 0.02;
    }
    croak "clients did not pause within " . ($deadline - $t0) . " s";
}

sub resume {
    my ($self) = @_;
    unlink "$self->{dir}/pause";
}

sub stop_load {
    my ($self) = @_;
    return unless $self->{client_pids};
    _spew("$self->{dir}/stop", 1);
    my @bad;
    for my $pid (@{ $self->{client_pids} }) {
        waitpid($pid, 0);
        push @bad, $pid if $?;
    }
    delete $self->{client_pids};
    unlink "$self->{dir}/pause";
    return @bad;
}

# ------------------------------------------------------------------ records --

# { final => { id => {...} }, resolutions => { id => {...} },
#   attempts => [ [t1, status, pod, id] ], problems => [...], dup => [...],
#   reads => { ok, unavailable } }
# RBCS::Resilience::tally($recs): the clients' final outcomes counted, as
# (\%by_outcome, \%by_kind_and_outcome (T, D, W, H), \%resolutions by
# action and outcome, the number of partial captures done)
sub tally {
    my ($recs) = @_;
    my (%by, %kind, %res);
    for my $f (values %{ $recs->{final} }) {
        $by{ $f->{outcome} }++;
        $kind{ $f->{kind} }{ $f->{outcome} }++;
    }
    $res{ $_->{action} }{ $_->{outcome} }++ for values %{ $recs->{resolutions} };
    my $partial = grep { $_->{action} eq 'capture' && $_->{outcome} eq 'DONE'
                         && defined $_->{amount} } values %{ $recs->{resolutions} };
    return (\%by, \%kind, \%res, $partial);
}

# the fields of the F (transfer or hold) and C (capture or void) lines,
# as transfer_final and resolve_final write them (empty ones undef)
my %FIELDS = (
    F => [qw(id src dst amount outcome status attempts t0 t1 pod kind
             expires_in expires_at)],
    C => [qw(id action amount expect outcome status attempts t0 t1 pod
             uncertain early)]);

sub records {
    my ($self) = @_;
    my (%final, %resol, @attempts, @problems, @dup);
    for my $file (sort glob "$self->{dir}/rec.*") {
        open my $fh, '<', $file or next;
        while (my $l = <$fh>) {
            chomp $l;
            my @f = split /\t/, $l, -1;
            if ($f[0] eq 'A') {
                push @attempts, [ $f[5], $f[3], $f[2], $f[1] ];
            } elsif (my $cols = $FIELDS{ $f[0] }) {
                # the first outcome of an id counts; another one is a dup
                my %rec;
                @rec{@$cols} = map { length($_ // '') ? $_ : undef } @f[1 .. $#f];
                $rec{kind} //= 'T' if $f[0] eq 'F';
                my $seen = $f[0] eq 'F' ? \%final : \%resol;
                if (my $old = $seen->{ $rec{id} }) {
                    push @dup, ($f[0] eq 'F' ? $rec{id} : "$rec{id}/$rec{action}")
                        . ": reported $old->{outcome} ($old->{status})"
                        . " and then $rec{outcome} ($rec{status})"
                        if $old->{outcome} ne $rec{outcome}
                        || ($old->{action} // '') ne ($rec{action} // '');
                    next;
                }
                $seen->{ $rec{id} } = \%rec;
            } elsif ($f[0] eq 'P') {
                push @problems, $f[1];
            }
        }
    }
    return { final => \%final, resolutions => \%resol, attempts => \@attempts,
             problems => \@problems, dup => \@dup };
}

# ------------------------------------------------------------------- audits --

# The audit's checks in SQL, on one snapshot, in the order of its report:
# each a query whose rows are what is wrong (at most 10 reported), and
# what the failure says.
my @CHECKS = (
    # no STANDARD account's available balance below minus its limit (an
    # EXTERNAL account has no floor)
    [ below_limit => 'STANDARD accounts whose available balance is below '
        . 'minus their overdraft limit', q{
        SELECT account_number, CAST(balance - held_balance AS DECIMAL(38,2)),
               CAST(overdraft_limit AS DECIMAL(38,2))
          FROM accounts
         WHERE kind = 'STANDARD' AND balance - held_balance < -overdraft_limit} ],

    # every balance is what its ledger entries add up to (the last entry's
    # balance_after too); its version counts the entries and the changes
    # of its held balance (each hold it is the source of, and each void or
    # expiry of one: a capture is an entry)
    [ ledger_bad => 'ledger disagrees with balances or versions', q{
        SELECT a.account_number FROM accounts a
          LEFT JOIN (SELECT account_number, SUM(amount) s, COUNT(*) n,
                            MAX(version) v, MIN(version) v0
                       FROM entries GROUP BY account_number) e
            ON e.account_number = a.account_number
          LEFT JOIN entries l
            ON l.account_number = a.account_number AND l.version = e.v
          LEFT JOIN (SELECT source_account,
                            SUM(status <> 'REJECTED')
                            + SUM(status IN ('VOIDED', 'EXPIRED')) k
                       FROM transactions WHERE hold = 1
                      GROUP BY source_account) h
            ON h.source_account = a.account_number
         WHERE e.n IS NULL OR a.balance <> e.s OR a.balance <> l.balance_after
            OR e.v0 <> 1 OR e.v > a.version
            OR a.version <> e.n + COALESCE(h.k, 0)} ],

    # the held balance is the sum of the account's pending holds; the
    # holds table lists the pending holds, and only those
    [ held_bad => 'held balances disagree with the pending holds', q{
        SELECT a.account_number, 'held', CAST(a.held_balance AS DECIMAL(38,2)),
               'pending', CAST(COALESCE(h.s, 0) AS DECIMAL(38,2))
          FROM accounts a
          LEFT JOIN (SELECT source_account, SUM(amount) s FROM holds
                      GROUP BY source_account) h
            ON h.source_account = a.account_number
         WHERE a.held_balance <> COALESCE(h.s, 0) OR a.held_balance < 0
        UNION ALL
        SELECT h.transaction_id, 'in holds, transaction', COALESCE(t.status, 'missing'),
               t.hold, NULL
          FROM holds h
          LEFT JOIN transactions t ON t.transaction_id = h.transaction_id
         WHERE t.transaction_id IS NULL OR t.hold <> 1 OR t.status <> 'PENDING'
            OR t.amount <> h.amount OR t.source_account <> h.source_account
            OR t.destination_account <> h.destination_account
            OR NOT (t.expires_at <=> h.expires_at)
        UNION ALL
        SELECT t.transaction_id, t.status, 'hold', t.hold,
               IF(h.transaction_id IS NULL, 'not in holds', 'in holds')
          FROM transactions t
          LEFT JOIN holds h ON h.transaction_id = t.transaction_id
         WHERE (t.status = 'PENDING' AND h.transaction_id IS NULL)
            OR (t.status IN ('PENDING', 'VOIDED', 'EXPIRED') AND t.hold <> 1)} ],

    # a completed transfer has exactly its two entries, from its source to
    # its destination, of its amount (a captured hold: of the captured
    # amount); any other transaction none (a hold pending, voided or
    # expired moved nothing); no entry without its transaction
    [ entries_bad => 'transactions whose entries are wrong', q{
        SELECT t.transaction_id, t.status FROM transactions t
          LEFT JOIN (SELECT transaction_id, COUNT(*) n, SUM(amount) s,
                            MAX(amount) mx,
                            SUM(account_number = counterparty) self,
                            MAX(IF(amount < 0, account_number, NULL)) src,
                            MAX(IF(amount > 0, account_number, NULL)) dst
                       FROM entries WHERE type = 'TRANSFER'
                      GROUP BY transaction_id) e
            ON e.transaction_id = t.transaction_id
         WHERE (t.status = 'COMPLETED'
                AND (e.n IS NULL OR e.n <> 2 OR e.s <> 0 OR e.self <> 0
                     OR NOT (e.mx <=> IF(t.hold = 1, t.captured_amount, t.amount))
                     OR NOT (e.src <=> t.source_account)
                     OR NOT (e.dst <=> t.destination_account)))
            OR (t.status <> 'COMPLETED' AND e.n IS NOT NULL)
        UNION ALL
        SELECT e.transaction_id, 'entry without a transaction' FROM entries e
          LEFT JOIN transactions t ON t.transaction_id = e.transaction_id
         WHERE e.type = 'TRANSFER' AND t.transaction_id IS NULL} ],

    # no hold captured above its amount; captured_amount only on a
    # completed hold, and always there
    [ captured_bad => 'holds captured wrongly (above their amount, or '
        . 'not as a completed hold)', q{
        SELECT transaction_id, status, hold, CAST(amount AS DECIMAL(38,2)),
               CAST(captured_amount AS DECIMAL(38,2))
          FROM transactions
         WHERE (captured_amount IS NOT NULL
                AND (hold <> 1 OR status <> 'COMPLETED' OR captured_amount <= 0
                     OR captured_amount > amount))
            OR (hold = 1 AND status = 'COMPLETED' AND captured_amount IS NULL)} ],

    # every resolved hold has exactly one resolution row in audit_log, the
    # one of its state; a pending or refused hold none; no resolution row
    # of anything but a hold
    [ resolved_log_bad => 'holds whose resolution is not recorded exactly '
        . 'once in audit_log', q{
        SELECT t.transaction_id, t.status, COALESCE(l.acts, 'no resolution row')
          FROM transactions t
          LEFT JOIN (SELECT subject, GROUP_CONCAT(action ORDER BY id) acts
                       FROM audit_log
                      WHERE action IN ('hold.capture', 'hold.void', 'hold.expire')
                      GROUP BY subject) l
            ON l.subject = t.transaction_id
         WHERE t.hold = 1
           AND NOT (COALESCE(l.acts, '') <=> CASE t.status
                     WHEN 'COMPLETED' THEN 'hold.capture'
                     WHEN 'VOIDED' THEN 'hold.void'
                     WHEN 'EXPIRED' THEN 'hold.expire' ELSE '' END)
        UNION ALL
        SELECT l.subject, l.action, 'of no hold' FROM audit_log l
          LEFT JOIN transactions t
            ON t.transaction_id = l.subject AND t.hold = 1
         WHERE l.action IN ('hold.capture', 'hold.void', 'hold.expire')
           AND t.transaction_id IS NULL} ],

    # expiries: nothing pending 3 s past its expiresAt (the service
    # releases within 1 s; the audit came after the recovery), nothing
    # released before it, nothing captured or voided at or after it
    [ expiry_bad => 'expiries wrong', q{
        SELECT transaction_id, 'still pending',
               TIMESTAMPDIFF(MICROSECOND, expires_at, UTC_TIMESTAMP(6)) / 1e6,
               's after expiresAt', expires_at
          FROM holds WHERE expires_at < UTC_TIMESTAMP(3) - INTERVAL 3 SECOND
        UNION ALL
        SELECT transaction_id, status, 'resolved at', resolved_at,
               CONCAT('expiresAt ', COALESCE(expires_at, 'none'))
          FROM transactions
         WHERE hold = 1
           AND ((status = 'EXPIRED' AND (expires_at IS NULL OR resolved_at IS NULL
                                         OR resolved_at < expires_at))
                OR (status IN ('COMPLETED', 'VOIDED')
                    AND (resolved_at IS NULL OR resolved_at >= expires_at)))} ],

    # every acknowledged transfer (deposits and withdrawals included)
    # applied exactly once, as acknowledged
    [ ack_bad => 'acknowledged but not applied exactly once', q{
        SELECT c.id, CONCAT('(', COALESCE(t.status, 'missing'), ')')
          FROM resilience_outcomes c
          LEFT JOIN transactions t ON t.transaction_id = c.id
          LEFT JOIN (SELECT transaction_id, COUNT(*) n FROM entries
                      WHERE type = 'TRANSFER' GROUP BY transaction_id) e
            ON e.transaction_id = c.id
         WHERE c.outcome = 'COMPLETED' AND c.kind <> 'H'
           AND (t.status IS NULL OR t.status <> 'COMPLETED' OR t.hold <> 0
                OR t.amount <> c.amount OR t.source_account <> c.src
                OR t.destination_account <> c.dst
                OR e.n IS NULL OR e.n <> 2)} ],

    # every acknowledged hold is a hold of the acknowledged accounts,
    # amount and expiry, pending or resolved (expired only with an expiry)
    [ hold_bad => 'holds acknowledged but not recorded as such', q{
        SELECT c.id, COALESCE(t.status, 'missing') FROM resilience_outcomes c
          LEFT JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'COMPLETED' AND c.kind = 'H'
           AND (t.status IS NULL OR t.hold <> 1
                OR t.status NOT IN ('PENDING', 'COMPLETED', 'VOIDED', 'EXPIRED')
                OR t.amount <> c.amount OR t.source_account <> c.src
                OR t.destination_account <> c.dst
                OR (c.expires_in IS NULL) <> (t.expires_at IS NULL)
                OR TIMESTAMPDIFF(MICROSECOND, t.created_at, t.expires_at)
                   <> c.expires_in * 1000000
                OR (t.status = 'EXPIRED' AND c.expires_in IS NULL))} ],

    # every capture or void the clients saw acknowledged (200) is the
    # hold's final state, with the captured amount; a refusal (409) is of
    # a hold that had expired, answered at or after its expiresAt (only
    # the client that made a hold resolves it: nothing else can have),
    # released since or about to be (the release follows within a second);
    # a 409 on the retry of a capture whose earlier attempt had applied
    # would be a replay answered wrongly
    [ res_bad => 'captures and voids whose answer is not the hold\'s state', q{
        SELECT r.id, r.action, r.outcome,
               CASE WHEN r.outcome = 'REFUSED' AND r.early = 1
                         THEN 'answered before expiresAt'
                    WHEN r.outcome = 'REFUSED' AND r.uncertain = 1
                         AND t.status = IF(r.action = 'capture', 'COMPLETED', 'VOIDED')
                         AND (r.action = 'void' OR t.captured_amount = r.expect)
                         THEN 'on a retry, but the earlier attempt had applied'
                    ELSE '' END,
               'hold', COALESCE(t.status, 'missing'),
               CAST(t.captured_amount AS DECIMAL(38,2))
          FROM resilience_resolutions r
          LEFT JOIN transactions t ON t.transaction_id = r.id
         WHERE r.outcome = 'ERROR'
            OR (r.outcome = 'DONE' AND r.action = 'capture'
                AND (t.status IS NULL OR t.status <> 'COMPLETED'
                     OR NOT (t.captured_amount <=> r.expect)))
            OR (r.outcome = 'DONE' AND r.action = 'void'
                AND (t.status IS NULL OR t.status <> 'VOIDED'))
            OR (r.outcome = 'REFUSED'
                AND (t.status IS NULL OR r.early = 1
                     OR NOT (t.status = 'EXPIRED'
                             OR (t.status = 'PENDING'
                                 AND t.expires_at <= UTC_TIMESTAMP(3)))))} ],

    # no hold captured or voided that no client asked to, nor captured of
    # another amount
    [ res_phantom => 'holds resolved as no client asked', q{
        SELECT t.transaction_id, t.status, CAST(t.captured_amount AS DECIMAL(38,2)),
               'asked', COALESCE(r.action, 'nothing'), CAST(r.expect AS DECIMAL(38,2))
          FROM transactions t
          LEFT JOIN resilience_resolutions r ON r.id = t.transaction_id
         WHERE t.hold = 1
           AND ((t.status = 'COMPLETED'
                 AND (r.id IS NULL OR r.action <> 'capture'
                      OR NOT (r.expect <=> t.captured_amount)))
                OR (t.status = 'VOIDED' AND (r.id IS NULL OR r.action <> 'void')))} ],

    # nothing applied that was reported rejected (no entries, no hold);
    # the rejection recorded
    [ rej_applied => 'reported rejected but applied', q{
        SELECT c.id FROM resilience_outcomes c
          JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'REJECTED' AND t.status <> 'REJECTED'
        UNION ALL
        SELECT c.id FROM resilience_outcomes c
          JOIN entries e ON e.transaction_id = c.id
         WHERE c.outcome = 'REJECTED'
        UNION ALL
        SELECT c.id FROM resilience_outcomes c
          JOIN holds h ON h.transaction_id = c.id
         WHERE c.outcome = 'REJECTED'} ],

    [ rej_unrecorded => 'reported rejected but not recorded', q{
        SELECT c.id FROM resilience_outcomes c
          LEFT JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'REJECTED' AND t.transaction_id IS NULL} ],

    # a transaction (a transfer or a hold) for which no process of the
    # suite has an outcome
    [ phantom => 'applied but never sent by the suite', q{
        SELECT t.transaction_id FROM transactions t
          LEFT JOIN resilience_outcomes c ON c.id = t.transaction_id
         WHERE c.id IS NULL} ],
);

sub dbh { $_[0]{pods}[0]->dbh }

# The audit, with the clients paused (the service's expiries go on): money
# conserved and @CHECKS in SQL on one consistent snapshot of the database;
# then a sample of outcomes replayed unchanged, and balances read through
# every worker of every pod equal the database.
sub audit {
    my ($self, $label, %o) = @_;
    my $paused = $self->pause;
    my $t0 = time;
    my $a = { label => $label, paused_in => $paused, window => $o{window} };
    my $recs = $self->records;
    $a->{recs} = $recs;
    $self->_await_overdue($a);
    $self->_audit_sql($a, $recs);
    $self->_audit_replays($a, $recs) unless $o{no_replays};
    $self->_audit_reads($a);
    $a->{took} = time - $t0;
    $self->resume;
    my @fail;
    my $list = sub {
        my ($key, $what) = @_;
        push @fail, "$what: @{ $a->{$key} }" if @{ $a->{$key} // [] };
    };
    push @fail, "total $a->{total} != $a->{initial_total}"
        if $a->{total} ne $a->{initial_total};
    $list->(@$_[0, 1]) for @CHECKS;
    push @fail, "outcome changed: @{ $recs->{dup} }" if @{ $recs->{dup} };
    $list->('replay_bad', 'replay differs');
    push @fail, "reads differ from the database after $a->{read_bound} s: "
        . join('; ', @{ $a->{read_bad} }) if @{ $a->{read_bad} };
    $list->('unreached', 'workers never reached by the reads');
    $a->{fail} = \@fail;
    $a->{ok} = !@fail;
    return $a;
}

sub _first { my ($n, @l) = @_; return @l > $n ? (@l[0 .. $n - 1], '...') : @l }

# The service releases a hold within a second of its expiresAt, but not
# while the database is away: holds overdue by more than a second when the
# audit starts (after a fault) are given up to 10 s to go.  Those still
# pending 3 s past their expiresAt are found by the audit.
sub _await_overdue {
    my ($self, $a) = @_;
    my $t0 = time;
    my $dbh = $self->dbh;
    my $overdue = sub {
        my ($n) = $dbh->selectrow_array(q{SELECT COUNT(*) FROM holds
            WHERE expires_at < UTC_TIMESTAMP(3) - INTERVAL 1 SECOND});
        return $n;
    };
    my $n = $a->{overdue_at_audit} = $overdue->();
    while ($n && time - $t0 < 10) {
        sleep 0.1;
        $n = $overdue->();
    }
    $a->{overdue_wait} = time - $t0;
}

# the rows of a query, each joined by spaces, at most 10 (and '...')
sub _rows {
    my ($dbh, $sql, @bind) = @_;
    return [ _first(10, map { join ' ', map { $_ // 'NULL' } @$_ }
                        @{ $dbh->selectall_arrayref($sql, undef, @bind) }) ];
}

sub _audit_sql {
    my ($self, $a, $recs) = @_;
    my $dbh = $self->dbh;

    # the outcomes the clients saw, as tables: transfers and holds, and
    # the captures and voids
    $dbh->do('DROP TABLE IF EXISTS resilience_outcomes, resilience_resolutions');
    $dbh->do(q{CREATE TABLE resilience_outcomes (
        id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        src VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        dst VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        amount DECIMAL(36,18) NOT NULL,
        outcome VARCHAR(16) NOT NULL,
        kind CHAR(1) NOT NULL,
        expires_in INT NULL,
        PRIMARY KEY (id)) ENGINE=InnoDB});
    $dbh->do(q{CREATE TABLE resilience_resolutions (
        id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        action VARCHAR(8) NOT NULL,
        amount DECIMAL(36,18) NULL,
        expect DECIMAL(36,18) NULL,
        outcome VARCHAR(16) NOT NULL,
        uncertain TINYINT NOT NULL,
        early TINYINT NOT NULL,
        PRIMARY KEY (id)) ENGINE=InnoDB});
    my $load = sub {
        my ($table, $cols, @rows) = @_;
        while (my @chunk = splice @rows, 0, 500) {
            $dbh->do("INSERT INTO $table (" . join(',', @$cols) . ') VALUES '
                . join(',', map { my $r = $_; '(' . join(',', map { $dbh->quote($r->{$_}) }
                       @$cols) . ')' } @chunk));
        }
    };
    $load->('resilience_outcomes', [qw(id src dst amount outcome kind expires_in)],
            values %{ $recs->{final} });
    $load->('resilience_resolutions', [qw(id action amount expect outcome uncertain early)],
            values %{ $recs->{resolutions} });

    # everything below reads one snapshot: the service's expiries go on
    # meanwhile
    $dbh->do(q{SET time_zone = '+00:00'});
    $dbh->do('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    $dbh->do('START TRANSACTION WITH CONSISTENT SNAPSHOT');
    my $ok = eval { $self->_audit_snapshot($a, $recs, $dbh); 1 };
    my $err = $@;
    eval { $dbh->do('COMMIT') };
    die $err unless $ok;
}

sub _audit_snapshot {
    my ($self, $a, $recs, $dbh) = @_;

    # the total of all balances, EXTERNAL accounts included, is the total
    # opened; how many STANDARD accounts use their overdraft (available
    # balance below zero), how many are below it; what the EXTERNAL
    # accounts hold
    my ($total, $initial, $naccounts, $overdrawn, $below, $external) = $dbh->selectrow_array(
        q{SELECT CAST(SUM(balance) AS DECIMAL(38,2)),
                 CAST(SUM(initial_balance) AS DECIMAL(38,2)), COUNT(*),
                 SUM(kind = 'STANDARD' AND balance - held_balance < 0),
                 SUM(kind = 'STANDARD' AND balance - held_balance < -overdraft_limit),
                 CAST(SUM(IF(kind = 'EXTERNAL', balance, 0)) AS DECIMAL(38,2))
            FROM accounts});
    @$a{qw(total initial_total naccounts overdrawn below_limit_n external_balance)}
        = ($total, $initial, $naccounts, $overdrawn + 0, $below + 0, $external);

    $a->{ $_->[0] } = _rows($dbh, $_->[2]) for @CHECKS;

    # counts
    my %res;
    (@$a{qw(by_outcome by_kind)}, undef, $res{'capture DONE partial'}) = tally($recs);
    $res{"$_->{action} $_->{outcome}"}++ for values %{ $recs->{resolutions} };
    $res{"$_->{action} $_->{outcome} after an unknown attempt"}++
        for grep { $_->{uncertain} } values %{ $recs->{resolutions} };
    $a->{by_resolution} = \%res;
    ($a->{unknown_applied}) = $dbh->selectrow_array(q{
        SELECT COUNT(*) FROM resilience_outcomes c
          JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'UNKNOWN' AND t.status <> 'REJECTED'});
    ($a->{db_completed}, $a->{db_rejected}) = $dbh->selectrow_array(q{
        SELECT SUM(status = 'COMPLETED' AND hold = 0), SUM(status = 'REJECTED')
          FROM transactions});
    $a->{db_completed} //= 0;
    $a->{db_rejected} //= 0;
    my %holds = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(q{
        SELECT status, COUNT(*) FROM transactions WHERE hold = 1 GROUP BY status}) };
    ($holds{partial}) = $dbh->selectrow_array(q{SELECT COUNT(*) FROM transactions
        WHERE hold = 1 AND status = 'COMPLETED' AND captured_amount < amount});
    $a->{db_holds} = \%holds;
    # how late the service released the holds that expired: all of them,
    # and those due in the fault's window
    my @w = @{ $a->{window} // [ 0, 4e9 ] };
    for my $x ([ 'expiry', 0, 4e9 ], [ 'expiry_window', @w ]) {
        my ($n, $max, $late) = $dbh->selectrow_array(q{
            SELECT COUNT(*),
                   MAX(TIMESTAMPDIFF(MICROSECOND, expires_at, resolved_at)) / 1e6,
                   SUM(resolved_at > expires_at + INTERVAL 1 SECOND)
              FROM transactions
             WHERE status = 'EXPIRED' AND UNIX_TIMESTAMP(expires_at) BETWEEN ? AND ?},
            undef, $x->[1], $x->[2]);
        $a->{ $x->[0] } = { n => $n // 0, max_late => $max, late => $late // 0 };
    }
}

# a sample of final outcomes asked again: the same outcome (a hold's
# request: 200 with the PENDING hold as it was made, whatever became of it
# since; a capture or void: 200 with the same resolution, or 409 again)
sub _audit_replays {
    my ($self, $a, $recs) = @_;
    my @ids = grep { $_->{outcome} eq 'COMPLETED' || $_->{outcome} eq 'REJECTED' }
              values %{ $recs->{final} };
    @ids = (shuffle(@ids))[0 .. min(11, $#ids)];
    my @res = grep { $_->{outcome} eq 'DONE' || $_->{outcome} eq 'REFUSED' }
              values %{ $recs->{resolutions} };
    @res = (shuffle(@res))[0 .. min(5, $#res)];
    my @bad;
    my $npods = @{ $self->{pods} };
    for my $rec (@ids, @res) {
        my $act = $rec->{action};       # a capture or void; else a transfer
        my $hold = !$act && $rec->{kind} eq 'H';
        my $res = $act
            ? $self->resolve_attempt(int rand $npods, $rec->{id}, $act, $rec->{amount}, 5)
            : $self->attempt(int rand $npods, $rec->{id}, $rec->{src}, $rec->{dst},
                $rec->{amount}, 5, hold => $hold, expires_in => $rec->{expires_in});
        my $s = $res->{status};
        my $j = $res->{json} // {};
        my $ok = !$act ? ($rec->{outcome} eq 'COMPLETED'
            ? $s == 200 && ($j->{status} // '') eq ($hold ? 'PENDING' : 'COMPLETED')
            : ($s == 422 || $s == 404))
          : $rec->{outcome} eq 'DONE'
            ? $s == 200 && ($j->{status} // '') eq ($act eq 'capture' ? 'COMPLETED' : 'VOIDED')
              && ($act ne 'capture' || ($j->{capturedAmount} // '') eq $rec->{expect})
            : $s == 409;
        push @bad, $rec->{id} . ($act ? "/$act" : '') . " was $rec->{outcome}, now $s "
            . substr($res->{body} // '', 0, 120) unless $ok;
    }
    $a->{replays} = @ids + @res;
    $a->{replay_bad} = \@bad;
}

sub _audit_reads {
    my ($self, $a) = @_;
    my $dbh = $self->dbh;
    my @acc = ($self->accounts, $self->{external}, qw(PA PB XA XB));
    my $t0 = time;
    my $deadline = $t0 + $self->{ttl} + 2;
    my (%seen, @bad, $first_bad, $reads);
    my %want = map { $_ => 1 } @acc;
    my $round = 0;
    while (1) {
        $round++;
        my %db = map { $_->[0] => [ @$_[1 .. 3] ] } @{ $dbh->selectall_arrayref(
            q{SELECT account_number, CAST(balance AS DECIMAL(38,2)), version,
                     CAST(held_balance AS DECIMAL(38,2))
                FROM accounts}) };
        @bad = ();
        my @ahead;
        for my $p (0 .. $#{ $self->{pods} }) {
            my $t = $self->{pods}[$p];
            my @req;
            for my $n (sort keys %want) {
                push @req, [ $n, "GET /accounts/$n/balance HTTP/1.1\r\n"
                    . "Host: 127.0.0.1\r\nConnection: close\r\n\r\n" ] for 1 .. 4;
            }
            my @res = burst($t->port, [ map { $_->[1] } @req ], procs => 2);
            for my $i (0 .. $#res) {
                my ($n) = @{ $req[$i] };
                my $r = $res[$i];
                $reads++;
                my $w = $r->{headers}{'x-rbcs-worker'};
                $seen{$p}{$w}++ if defined $w;
                my $j = $r->{json} // {};
                my $d = $db{$n};
                next if ($r->{status} // 0) == 200 && $d
                    && ($j->{balance} // '') eq $d->[0]
                    && ($j->{version} // -1) == $d->[1]
                    && ($j->{heldBalance} // '') eq $d->[2];
                # newer than the database read before it: the account moved
                # on since (a hold expired); read again, against the
                # database again
                if (($r->{status} // 0) == 200 && $d
                    && ($j->{version} // -1) > $d->[1]) {
                    push @ahead, "$n moved on";
                    next;
                }
                push @bad, sprintf '%s on %s: %s %s held %s v%s (%s), database %s held %s v%s',
                    $n, $self->pod_name($p), $r->{status} // 'none',
                    $j->{balance} // '?', $j->{heldBalance} // '?',
                    $j->{version} // '?', $r->{headers}{'x-rbcs-cache'} // '?',
                    $d ? @$d[0, 2, 1] : ('none', '?', '?');
            }
        }
        my %u;
        @bad = grep { !$u{$_}++ } @bad;
        @ahead = grep { !$u{$_}++ } @ahead;
        $first_bad //= [ @bad ];
        # every worker that is running now must have answered some reads
        my @unreached;
        for my $p (0 .. $#{ $self->{pods} }) {
            push @unreached, map { $self->pod_name($p) . " worker $_" }
                grep { !$seen{$p}{$_} } $self->{pods}[$p]->worker_pids;
        }
        $a->{unreached} = \@unreached;
        if (time > $deadline) {
            push @bad, @ahead;
            last;
        }
        last if !@bad && !@ahead && !@unreached;
        if (@bad || @ahead) {
            %want = map { (split / /, $_)[0] => 1 } @bad, @ahead;
            $want{ $acc[0] } = 1;
        }
        sleep 0.2;
    }
    $a->{reads} = $reads;
    $a->{read_rounds} = $round;
    $a->{read_first_bad} = [ _first(6, @$first_bad) ];
    $a->{read_converged} = @$first_bad ? time - $t0 : 0;
    $a->{read_bound} = $self->{ttl} + 2;
    $a->{read_bad} = [ _first(10, @bad) ];
    $a->{workers_read} = { map { $self->pod_name($_) => [ sort keys %{ $seen{$_} } ] }
                           0 .. $#{ $self->{pods} } };
}

# --------------------------------------------------------- recovery probes --

# From $since, transfers with fresh ids on every pod until each pod has
# acknowledged one: the time to recover.  Returns seconds (undef: never).
sub probe {
    my ($self, $since, %o) = @_;
    my $fh = $self->ctl_fh;
    my $limit = $o{limit} // 60;
    my $worst = 0;
    for my $p (0 .. $#{ $self->{pods} }) {
        my $ok;
        while (time - $since < $limit) {
            my $id = 'probe-' . $$ . '-' . ++$self->{probe_seq};
            my @dir = $self->{probe_seq} % 2 ? qw(PA PB) : qw(PB PA);
            my $f = $self->transfer_final($fh, $id, @dir, '0.01', pod => $p,
                timeout => 4, give_up => $limit - (time - $since), fresh => 1);
            if ($f->{outcome} eq 'COMPLETED') {
                $ok = $f->{res}{t1};
                last;
            }
        }
        return undef unless defined $ok;
        $worst = max($worst, $ok - $since);
    }
    return $worst;
}

# ------------------------------------------------------------------- faults --

# Run one fault: $inject->() does it and returns { inject => t, end => t,
# ...details }; then the probe measures the recovery from `end`, the load
# goes on for `post` seconds, and the audit runs.  Returns the fault record.
sub fault {
    my ($self, $name, $inject, %o) = @_;
    sleep($o{pre} // 1);
    $self->msg("fault: $name");
    my $f = $inject->();
    $f->{name} = $name;
    $f->{end} //= $f->{inject};
    $self->msg("  $f->{detail}") if $f->{detail};
    $f->{recovery} = $self->probe($f->{end});
    $f->{recovered_at} = defined $f->{recovery} ? $f->{end} + $f->{recovery} : undef;
    sleep($o{post} // 0.5);
    $f->{window} = [ $f->{inject} - 0.001, time ];
    my $a = $self->audit($name, window => $f->{window});
    $f->{audit} = $a;
    $self->_window_stats($f, $a->{recs});
    delete $a->{recs};
    push @{ $self->{faults} }, $f;
    $self->msg(sprintf '  recovered in %s; %d attempts in the window: %s; '
        . 'longest gap without an acknowledgement %.2f s; audit %s',
        defined $f->{recovery} ? sprintf('%.3f s', $f->{recovery}) : 'NEVER',
        $f->{attempts}, join(', ', map { "$_ $f->{by_status}{$_}" }
                             sort keys %{ $f->{by_status} }),
        $f->{gap}, $a->{ok} ? 'ok' : 'FAILED: ' . join('; ', @{ $a->{fail} }));
    my $e = $a->{expiry_window} // {};
    $self->msg(sprintf '  holds: %s; expiring in the window: %d, released at most %s '
        . 'after expiresAt; overdue at the audit: %d; STANDARD accounts using their '
        . 'overdraft: %d',
        join(', ', map { "$_ $a->{db_holds}{$_}" } sort keys %{ $a->{db_holds} // {} }),
        $e->{n} // 0, defined $e->{max_late} ? sprintf('%.3f s', $e->{max_late}) : '-',
        $a->{overdue_at_audit} // 0, $a->{overdrawn} // 0);
    return $f;
}

sub _window_stats {
    my ($self, $f, $recs) = @_;
    my ($lo, $hi) = @{ $f->{window} };
    my %by;
    my $n = 0;
    for my $x (@{ $recs->{attempts} }) {
        next if $x->[0] < $lo || $x->[0] > $hi;
        next if $x->[3] =~ /^probe-/;
        $n++;
        $by{ $x->[1] == 0 ? 'no answer' : $x->[1] }++;
    }
    $f->{attempts} = $n;
    $f->{by_status} = \%by;
    # the longest time the clients went without an acknowledgement, from
    # the fault to the end of the window
    my @acks = sort { $a <=> $b } map { $_->[0] } grep {
        ($_->[1] == 201 || $_->[1] == 200) && $_->[3] !~ /^probe-/
            && $_->[0] >= $lo - 5 && $_->[0] <= $hi
    } @{ $recs->{attempts} };
    my @before = grep { $_ < $lo } @acks;
    my @after = grep { $_ >= $lo } @acks;
    my $prev = @before ? $before[-1] : $lo;
    my $gap = 0;
    for my $t (@after) { $gap = max($gap, $t - $prev); $prev = $t }
    $f->{gap} = $gap;
    my %f;
    for my $r (values %{ $recs->{final} }) {
        next if $r->{t1} < $lo || $r->{t1} > $hi || $r->{id} =~ /^probe-/;
        $f{ $r->{outcome} }++;
    }
    $f->{finals} = \%f;
}

# the time $cond came true, within $secs seconds (undef: it did not)
sub _wait_until {
    my ($secs, $cond) = @_;
    return RBCS::Test::wait_for($secs, sub { $cond->() && time }, 0.01);
}

# SIGKILL a worker of a pod (in turn), $n times, $gap apart
sub kill_workers {
    my ($self, %o) = @_;
    my ($n, $gap) = ($o{kills} // 1, $o{gap} // 0.3);
    my $f = { inject => time, kills => [] };
    for my $i (0 .. $n - 1) {
        my $p = $i % @{ $self->{pods} };
        my $t = $self->{pods}[$p];
        my @w = $t->worker_pids;
        my $victim = $w[int rand @w];
        my $t0 = time;
        kill 'KILL', $victim;
        $f->{end} = $t0;
        my $back = _wait_until(10, sub {
            my @now = $t->worker_pids;
            @now >= @w && !grep { $_ == $victim } @now;
        });
        push @{ $f->{kills} }, { pod => $p, pid => $victim,
                                 respawned => defined $back ? $back - $t0 : undef };
        sleep $gap if $i < $n - 1;
    }
    $f->{detail} = join ', ', map {
        sprintf '%s worker %d respawned in %s', $self->pod_name($_->{pod}), $_->{pid},
            defined $_->{respawned} ? sprintf('%.3f s', $_->{respawned}) : 'NEVER'
    } @{ $f->{kills} };
    return $f;
}

# HUP a pod's master under load: new workers, the old ones exit once done
sub reload_pod {
    my ($self, $p) = @_;
    my $t = $self->{pods}[$p];
    my ($m, @old) = $t->nginx_pids;
    my %old = map { $_ => 1 } @old;
    my $t0 = time;
    kill 'HUP', $m;
    my $new = _wait_until(10, sub {
        (grep { !$old{$_} } RBCS::Test::_children($m)) >= @old });
    my $gone = _wait_until(30, sub { !grep { RBCS::Test::_alive($_) } @old });
    return { inject => $t0, end => $t0,
             new_workers => defined $new ? $new - $t0 : undef,
             old_exited => defined $gone ? $gone - $t0 : undef,
             detail => sprintf('%s: new workers after %s, old workers gone after %s',
                 $self->pod_name($p),
                 map { defined $_ ? sprintf('%.3f s', $_ - $t0) : 'NEVER' } $new, $gone) };
}

# SIGKILL a server (MariaDB's or Redis's: its signal returns once it is
# gone), $down seconds later start it again on its data directory: the
# times of the kill, of the start and of the server back
sub _kill_start {
    my ($server, $down) = @_;
    my $t0 = time;
    $server->signal('KILL');
    sleep $down;
    my $t1 = time;
    $server->start;
    return ($t0, $t1, time);
}

sub mariadb_kill {
    my ($self, %o) = @_;
    my ($t0, $t1, $t2) = _kill_start($self->{mariadb}, $o{down} // 1);
    return { inject => $t0, end => $t2, restart => $t2 - $t1,
             detail => sprintf('down %.1f s, restart (crash recovery) took %.2f s',
                               $t1 - $t0, $t2 - $t1) };
}

# SIGSTOP a server (MariaDB's or Redis's) for $secs seconds, then SIGCONT
sub _freeze {
    my ($server, $secs) = @_;
    my $t0 = time;
    $server->signal('STOP');
    sleep $secs;
    $server->signal('CONT');
    my $t1 = time;
    return { inject => $t0, end => $t1,
             detail => sprintf('SIGSTOP for %.1f s, then SIGCONT', $t1 - $t0) };
}

sub mariadb_freeze { my ($self, %o) = @_; _freeze($self->{mariadb}, $o{secs} // 3) }

sub redis_kill {
    my ($self, %o) = @_;
    my $r = $self->{redis};
    unlink $r->dir . '/dump.rdb';        # restarted empty
    my ($t0, undef, $t1) = _kill_start($r, $o{down} // 1);
    return { inject => $t0, end => $t1,
             detail => sprintf('SIGKILL, restarted empty after %.1f s', $t1 - $t0) };
}

sub redis_freeze { my ($self, %o) = @_; _freeze($self->{redis}, $o{secs} // 2.5) }

sub redis_stale {
    my ($self, %o) = @_;
    my $r = $self->{redis};
    my $ts = time;
    $r->save;
    sleep($o{age} // 1.5);               # the snapshot goes stale
    my ($t0, undef, $t1) = _kill_start($r, 0);     # loads the old snapshot
    my $keys = $r->cli('DBSIZE') // '?';
    $keys =~ s/\s+//g;
    return { inject => $t0, end => $t1,
             detail => sprintf('SAVE, %.1f s of transfers, SIGKILL, restarted '
                 . 'from the %.1f s old snapshot (%s keys)', $t0 - $ts, $t1 - $ts, $keys) };
}

# Clients that abort their request: after the whole request while it is in
# flight (the accounts held by a lock, so the answer cannot have come),
# FIN or RST; in the middle of the body; right after sending.  Transfers,
# and captures and voids of holds made beforehand.  Then a well-behaved
# client sends each request again and must see it applied once (a capture
# or void applied while the client was away: 200 with the same
# resolution).
sub client_aborts {
    my ($self, %o) = @_;
    my $n = $o{n} // 8;
    my $fh = $self->ctl_fh;
    my $t0 = time;
    my @pods = @{ $self->{pods} };
    my @workers = map { [ $_->worker_pids ] } @pods;
    my $seq = ($self->{abort_seq} //= 0)++;

    # the holds to resolve: n for each way of going away
    my @holds;
    for my $i (1 .. 3 * $n) {
        my $id = "ab$seq-hold-$i";
        my $f = $self->transfer_final($fh, $id, qw(XA XB), '1.00', hold => 1,
                                      fresh => 1);
        push @holds, $f->{outcome} eq 'COMPLETED'
            ? { id => $id, src => 'XA', amount => '1.00' } : undef;
    }
    my (@ids, @res, @socks);
    # one request sent (midbody: only its headers and half its body) and
    # recorded as aborted; aborted at once (race) or later (@socks)
    my $send = sub {
        my ($phase, $kind, $port, $label, $body, $path) = @_;
        my $req = _post($body, $path);
        $req = substr($req, 0, length($req) - int(length($body) / 2))
            if $phase eq 'midbody';
        my $s = _send_raw($port, $req);
        print $fh "X\t$label\t$phase-$kind\n";
        if ($phase eq 'race') { _abort($s, $kind) } else { push @socks, [ $s, $kind ] }
    };
    # n transfers ($tr->($i): source, destination, amount), and the
    # capture (whole, or 0.40 of it; midbody: 0.50) or void of the holds
    # from the $off-th on
    my $phase = sub {
        my ($phase, $off, $tr) = @_;
        for my $i (1 .. $n) {
            my $kind = $i % 2 ? 'fin' : 'rst';
            my $id = "ab$seq-$phase-$kind-$i";
            my @t = $tr->($i);
            $send->($phase, $kind, $pods[$i % @pods]->port, $id, transfer_body($id, @t));
            push @ids, [ $id, @t, $phase ];
            my $h = $holds[$off + $i - 1] // next;
            my $r = $phase eq 'midbody' ? [ $h, 'capture', '0.50' ]
                  : $i % 2 ? [ $h, 'void', undef ]
                  : [ $h, 'capture', $i % 4 ? '0.40' : undef ];
            $send->($phase, $kind, $pods[($i + 1) % @pods]->port, "$h->{id}/$r->[1]",
                    $JSON->encode(defined $r->[2] ? { amount => $r->[2] } : {}),
                    "/accounts/transactions/$h->{id}/$r->[1]");
            push @res, [ @$r, $phase ];
        }
    };

    my $dbh = $self->{mariadb}->admin_dbh($self->{pods}[0]->dbname);
    $dbh->{AutoCommit} = 0;
    $dbh->do(q{SELECT * FROM accounts WHERE account_number IN ('XA', 'XB')
               FOR UPDATE});
    my $locked = time;

    $phase->('inflight', 0, sub { ($_[0] % 3 ? qw(XA XB) : qw(XB XA)), '1.00' });
    # the transfers reach the database and wait for the lock: a worker's
    # write batch carries all of its transfers, the others queue behind it
    my $inflight = _wait_until(5, sub {
        my ($c) = $dbh->selectrow_array(q{SELECT COUNT(*) FROM
            information_schema.processlist WHERE db = ? AND command = 'Query'
            AND id <> CONNECTION_ID() AND info LIKE '%XA%'}, undef,
            $self->{pods}[0]->dbname);
        $c >= 1;
    });
    sleep 0.2;
    _abort(@$_) for splice @socks;
    # mid-body: the headers and half the body, then gone
    $phase->('midbody', $n, sub { qw(XA XB 2.00) });
    sleep 0.2;
    _abort(@$_) for splice @socks;
    sleep 0.2;
    $dbh->commit;                       # the in-flight ones go on
    my $unlocked = time;
    # right after sending, no lock: the race between answer and close
    $phase->('race', 2 * $n, sub { qw(XB XA 0.50) });
    sleep 1;
    my ($kinds, $retry) = $self->_aborts_retried($dbh, $seq, @ids, @res);
    my @crashed;
    for my $p (0 .. $#pods) {
        my %now = map { $_ => 1 } $pods[$p]->worker_pids;
        push @crashed, grep { !$now{$_} } @{ $workers[$p] };
    }
    my @k = grep { $kinds->{$_} } map { ($_, "$_ capture/void") } qw(inflight midbody race);
    my $detail = join '; ', map {
        my $k = $_;
        sprintf '%s: %d sent and aborted, %d applied before the retry, retry answered %s',
            $k, $kinds->{$k}{sent}, $kinds->{$k}{applied_before_retry} // 0,
            join(' ', map { "$_ x$retry->{$k}{$_}" } sort keys %{ $retry->{$k} })
    } @k;
    return { inject => $t0, end => time, kinds => $kinds, retry => $retry,
             inflight_seen => defined $inflight, crashed => \@crashed,
             inflight_after => defined $inflight ? $inflight - $locked : undef,
             locked_for => $unlocked - $locked,
             midbody_applied => ($kinds->{midbody}{applied_before_retry} // 0)
                 + ($kinds->{'midbody capture/void'}{applied_before_retry} // 0),
             detail => $detail . sprintf('; XA/XB locked for %.2f s, the in-flight '
                 . 'ones seen in MariaDB after %s', $unlocked - $locked,
                 defined $inflight ? sprintf('%.2f s', $inflight - $locked) : 'never')
                 . (@crashed ? "; workers gone: @crashed" : '') };
}

# What the service did with the aborted requests (@x: transfers [ id,
# source, destination, amount, phase ] and captures or voids [ hold,
# action, amount, phase ]), by kind: sent, applied before the retry; then
# each one again, by a client that waits for the answer: the answers
sub _aborts_retried {
    my ($self, $dbh, $seq, @x) = @_;
    my %applied = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
        q{SELECT transaction_id, status FROM transactions
           WHERE transaction_id LIKE ?}, undef, "ab$seq-%") };
    $dbh->disconnect;
    my (%kinds, %retry);
    # (a transfer is never PENDING: it is there, it was applied)
    for my $x (@x) {
        my $tr = !ref $x->[0];
        my $k = $tr ? $x->[4] : "$x->[3] capture/void";
        $kinds{$k}{sent}++;
        $kinds{$k}{applied_before_retry}++
            if ($applied{ $tr ? $x->[0] : $x->[0]{id} } // 'PENDING') ne 'PENDING';
        my $f = $tr ? $self->transfer_final($self->ctl_fh, @$x[0 .. 3])
                    : $self->resolve_final($self->ctl_fh, @$x[0 .. 2]);
        $retry{$k}{ $f->{res}{status} }++;
    }
    return (\%kinds, \%retry);
}

sub _post {
    my ($body, $path) = @_;
    return 'POST ' . ($path // '/accounts/transactions') . " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body)
        . "\r\nConnection: close\r\n\r\n$body";
}

sub _send_raw {
    my ($port, $bytes) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or croak "connect 127.0.0.1:$port: $!";
    binmode $s;
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, $bytes) == length $bytes or croak "short write: $!";
    return $s;
}

sub _abort {
    my ($s, $kind) = @_;
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $kind eq 'rst';
    close $s;
}

# ----------------------------------------------------------- bursts of HTTP --

# Send every request at once on its own connection (spread over `procs`
# processes), read every answer.  Returns, in order, hashes with status,
# headers, json, t (seconds from the request written to the answer read),
# err.
sub burst {
    my ($port, $reqs, %o) = @_;
    my $procs = min($o{procs} // 4, scalar @$reqs) || 1;
    my $timeout = $o{timeout} // 20;
    my $tmp = $o{tmp} // ($ENV{TMPDIR} // '/tmp');
    my @kids;
    for my $k (0 .. $procs - 1) {
        my $file = "$tmp/burst-$$-$k-" . int(rand 1e9);
        my $pid = fork // croak "fork: $!";
        if ($pid == 0) {
            my @mine = grep { $_ % $procs == $k } 0 .. $#$reqs;
            my (%sock, %buf, %sent, @out);
            my $sel = IO::Select->new;
            local $SIG{PIPE} = 'IGNORE';
            # read what is ready; called between the writes too, so that
            # an answer's time is not the time spent sending the others
            my $drain = sub {
                my ($wait) = @_;
                for my $s ($sel->can_read($wait)) {
                    my ($sock, $i) = @{ $sock{ fileno $s } };
                    my $n = sysread($s, $buf{$i}, 65536, length $buf{$i});
                    next if !defined $n && ($!{EINTR} || $!{EAGAIN});
                    next if $n;
                    my $r = RBCS::Test::Response->parse($buf{$i});
                    $out[$i] = { i => $i, status => $r->{status},
                        headers => $r->{headers}, body => $r->{body},
                        t => time - $sent{$i} };
                    $sel->remove($s);
                    delete $sock{ fileno $s };
                    close $s;
                }
            };
            for my $i (@mine) {
                my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                    PeerPort => $port, Proto => 'tcp', Timeout => 5);
                if (!$s) { $out[$i] = { i => $i, err => "connect: $!" }; next }
                binmode $s;
                my $ok = syswrite($s, $reqs->[$i]);
                $sent{$i} = time;
                if (!defined $ok) { $out[$i] = { i => $i, err => "write: $!" }; close $s; next }
                $sock{ fileno $s } = [ $s, $i ];
                $buf{$i} = '';
                $sel->add($s);
                $drain->(0);
            }
            my $deadline = time + $timeout;
            $drain->(0.2) while $sel->count && time < $deadline;
            for my $s ($sel->handles) {
                my ($sock, $i) = @{ $sock{ fileno $s } };
                $out[$i] = { i => $i, err => 'timeout', t => time - $sent{$i} };
                close $s;
            }
            open my $fh, '>', $file or POSIX::_exit(1);
            print $fh $JSON->encode($_), "\n" for grep { defined } @out;
            close $fh;
            POSIX::_exit(0);
        }
        push @kids, [ $pid, $file ];
    }
    my @res;
    for my $kid (@kids) {
        waitpid($kid->[0], 0);
        open my $fh, '<', $kid->[1] or next;
        while (my $l = <$fh>) {
            my $r = $JSON->decode($l);
            $r->{json} = eval { $JSON->decode($r->{body}) } if defined $r->{body};
            $res[ $r->{i} ] = $r;
        }
        close $fh;
        unlink $kid->[1];
    }
    return map { $_ // { err => 'lost' } } @res[0 .. $#$reqs];
}

# ------------------------------------------------------------ process memory --

sub mem_kb {   # (VmRSS, VmHWM) of a process, in kB
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return (undef, undef);
    my ($rss, $hwm);
    while (my $l = <$fh>) {
        $rss = $1 if $l =~ /^VmRSS:\s+(\d+)/;
        $hwm = $1 if $l =~ /^VmHWM:\s+(\d+)/;
    }
    return ($rss, $hwm);
}

# ---------------------------------------------------------------- overload --

# A child process that holds accounts with SELECT ... FOR UPDATE for $secs
# seconds; returns once the lock is taken.  The pid, to wait for.
sub hold_lock {
    my ($m, $db, $accounts, $secs, $dir) = @_;
    my $flag = "$dir/locked-$$-" . int(rand 1e9);
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        my $dbh = $m->admin_dbh($db);
        $dbh->{AutoCommit} = 0;
        $dbh->do('SELECT * FROM accounts WHERE account_number IN ('
            . join(',', map { $dbh->quote($_) } @$accounts) . ') FOR UPDATE');
        _spew($flag, 1);
        sleep $secs;
        $dbh->commit;
        $dbh->disconnect;
        POSIX::_exit(0);
    }
    _wait_until(10, sub { -e $flag }) or croak 'the lock holder did not lock';
    unlink $flag;
    return $pid;
}

# A flood's answers (@r, from burst) counted into $f: by status, the 503s
# answered at once (in less than $at_once seconds) and their times, the
# answers held longer, the 503s without Retry-After or of an unknown
# outcome
sub _flood_stats {
    my ($f, $at_once, @r) = @_;
    my @ft;
    for my $x (@r) {
        my $s = $x->{status} // 0;
        # the time the service held the answer when the pod says it
        # (X-Request-Time), else the time the client waited for it
        my $held = $x->{headers}{'x-request-time'} // $x->{t} // 99;
        $f->{status}{$s}++;
        $f->{client_slow}++ if ($x->{t} // 99) >= $at_once;
        if ($s == 503) {
            $f->{unknown_503}++ if (($x->{json} // {})->{detail} // '') =~ /not known/;
            $f->{no_retry_after}++ unless ($x->{headers}{'retry-after'} // '') =~ /^\d+$/;
            if ($held < $at_once) {
                $f->{fast_503}++;
                push @ft, $held;
            } else {
                $f->{slow_503}++;
            }
        }
        $f->{slow}++ if $held >= $at_once;
        $f->{other}++ unless $s == 503 || $s == 201;
    }
    @ft = sort { $a <=> $b } @ft;
    $f->{fast_max} = @ft ? $ft[-1] : undef;
    $f->{fast_p50} = @ft ? $ft[ int($#ft / 2) ] : undef;
    return $f;
}

# The flood over (at $release): the time until the pod accepts a transfer
# again, then 20 in a row and a burst of 1 + queue; the transfers' ids
# numbered on from $$seq
sub _serves_again {
    my ($t, $res, $queue, $release, $seq) = @_;
    my $back = _wait_until(30, sub {
        my $r = eval { $t->transfer('ov-after-' . ++$$seq, qw(O1 O2 0.01)) };
        $r && ($r->{status} // 0) == 201;
    });
    $res->{recovered} = defined $back ? $back - $release : undef;
    my ($ok, $slowest) = (0, 0);
    for my $i (1 .. 20) {
        my $t0 = time;
        my $r = $t->transfer('ov-seq-' . ++$$seq, qw(O2 O1 0.01));
        $slowest = max($slowest, time - $t0);
        $ok++ if ($r->{status} // 0) == 201;
    }
    $res->{after_sequential_ok} = $ok;
    $res->{after_slowest} = $slowest;
    # a burst within one worker's bound (the batch in flight and a full
    # queue behind it), all accepted
    my @req = map { _post(transfer_body('ov-burst-' . ++$$seq, 'O1', 'O2', '0.01')) }
              1 .. 1 + $queue;
    my @r = burst($t->port, \@req, procs => 2);
    $res->{after_burst} = { n => scalar @r, ok => scalar grep { ($_->{status} // 0) == 201 } @r };
}

# A pod with a small pool and queue, its accounts held by a lock (a slow
# database): floods of concurrent transfers.  Returns the measurements.
sub overload {
    my (%o) = @_;
    my $t = $o{pod};
    my $m = $o{mariadb};
    my ($pool, $queue, $workers) = @o{qw(pool queue workers)};
    my $bound = $workers * ($pool + $queue);
    my $res = { bound => $bound };

    for my $n (qw(O1 O2)) {
        $t->post_json('/accounts', { accountNumber => $n,
                                     initialBalance => '1000000.00' });
    }
    my @w = $t->worker_pids;
    $res->{workers} = \@w;
    my $mem = sub { [ map { [ mem_kb($_) ] } @w ] };
    $res->{mem_start} = $mem->();

    my $dbh = $m->admin_dbh($t->dbname);
    my $seq = 0;
    my $flood = sub {
        my ($n, $procs) = @_;
        my @req = map { _post(transfer_body('ov-' . ++$seq, 'O1', 'O2', '0.01')) } 1 .. $n;
        my $t0 = time;
        my @r = burst($t->port, \@req, procs => $procs, timeout => 30);
        return _flood_stats({ n => $n, took => time - $t0 }, $o{at_once}, @r);
    };

    # warm-up flood, then the measure of memory, then the large flood; the
    # lock goes after `hold` seconds, during the flood's slow answers
    # (slow => 'freeze': mariadbd is SIGSTOPped during each flood instead)
    my $dir = $o{dir};
    my $slow = $o{slow} // 'lock';
    $res->{slow} = $slow;
    my $slowly = sub {
        my ($n, $procs) = @_;
        my $f;
        if ($slow eq 'freeze') {
            $m->signal('STOP');
            $f = $flood->($n, $procs);
            $m->signal('CONT');
        } else {
            my $holder = hold_lock($m, $t->dbname, [qw(O1 O2)], $o{hold} // 1.5, $dir);
            $f = $flood->($n, $procs);
            waitpid($holder, 0);
        }
        return $f;
    };
    $res->{warm} = $slowly->($o{warm} // 400, $o{procs} // 4);
    sleep 0.5;
    $res->{mem_before} = $mem->();
    # the large flood, in rounds: the memory after each
    for my $round (1 .. ($o{rounds} // 1)) {
        my $f = $slowly->($o{big} // 2000, $o{big_procs} // 8);
        push @{ $res->{rounds} }, $f;
        push @{ $res->{mem_rounds} }, $mem->();
    }
    $res->{big} = $res->{rounds}[-1];
    my $release = time;
    $res->{mem_after} = $mem->();

    _serves_again($t, $res, $queue, $release, \$seq);
    $res->{mem_end} = $mem->();
    $res->{workers_after} = [ $t->worker_pids ];

    # what was applied: the 201s of the floods, and at most those 503s
    # that said the outcome was not known
    my ($applied) = $dbh->selectrow_array(q{SELECT COUNT(*) FROM transactions
        WHERE transaction_id LIKE 'ov-%' AND transaction_id NOT LIKE 'ov-after-%'
          AND transaction_id NOT LIKE 'ov-seq-%' AND transaction_id NOT LIKE 'ov-burst-%'
          AND status = 'COMPLETED'});
    $res->{applied} = $applied;
    $res->{acked} = sum(map { $_->{status}{201} // 0 } $res->{warm}, @{ $res->{rounds} });
    $res->{unknown} = sum(map { $_->{unknown_503} // 0 } $res->{warm}, @{ $res->{rounds} });
    my ($sum, $init) = $dbh->selectrow_array(q{SELECT SUM(balance), SUM(initial_balance)
        FROM accounts WHERE account_number IN ('O1','O2')});
    $res->{conserved} = $sum == $init;
    $res->{queue_full_total} = $t->metric('rbcs_mysql_queue_full_total');
    $dbh->disconnect;
    return $res;
}

# ---------------------------------------------------------------- lifecycle --

# Transfers held in flight by a lock; then HUP or QUIT; then the lock goes.
# Every transfer must be answered 201 and applied; the old workers exit;
# their MariaDB connections are closed cleanly.
sub lifecycle {
    my (%o) = @_;
    my $t = $o{pod};
    my $m = $o{mariadb};
    my $sig = $o{signal};
    my $n = $o{n} // 12;
    my $tag = lc $sig;
    my $res = { signal => $sig, n => $n };
    my $db = $t->dbname;
    for my $a (qw(L1 L2)) {
        $t->post_json('/accounts', { accountNumber => $a, initialBalance => '1000.00' });
    }
    my $adm = $m->admin_dbh;
    my $lock = $m->admin_dbh($db);
    $lock->{AutoCommit} = 0;
    # the sessions of the database but the lock's (running a query only:
    # $_[0] true)
    my $conns = sub {
        my ($c) = $adm->selectrow_array('SELECT COUNT(*) FROM information_schema.processlist
            WHERE db = ? AND id <> ?' . ($_[0] ? " AND command = 'Query'" : ''), undef,
            $db, $lock->{mariadb_thread_id});
        return $c;
    };
    my ($master, @old) = $t->nginx_pids;
    # the pool connections the running workers' metrics count, once none
    # is connecting and the server shows exactly those
    my $pool = sub {
        my $m = eval { $t->get('/metrics', timeout => 3)->{body} } // '';
        my %st = $m =~ /^rbcs_mysql_connections\{state="(\w+)"\} (\d+)$/mg;
        return undef if ($st{connecting} // 1) != 0;
        my $n = ($st{in_use} // 0) + ($st{idle} // 0);
        return $conns->() == $n ? $n : undef;
    };
    # every worker's pool connected: what its metrics count is in the server
    _wait_until(10, sub { defined $pool->() });
    $res->{conns_before} = $conns->();
    $res->{aborted_clients_before} = _aborted_clients($adm);
    my $redis_conns = sub { _redis_conns($o{redis}) };
    # each worker's command connection and worker 0's subscription
    my $redis_want = @old + 1;
    _wait_until(5, sub { ($redis_conns->() // 0) == $redis_want }) if $o{redis};
    $res->{redis_before} = $redis_conns->();

    $lock->do(q{SELECT * FROM accounts WHERE account_number IN ('L1', 'L2') FOR UPDATE});
    my @req = map { _post(transfer_body("$tag-$_", 'L1', 'L2', '1.00')) } 1 .. $n;
    my $file = "$o{dir}/lifecycle-$tag";
    my $kid = _burst_child($t->port, \@req, $o{dir}, $file);
    # every transfer held: a worker's write batch waits for the lock in the
    # database, the worker's other transfers wait in its write queue
    my $in_flight = sub {
        my $c = $conns->('query');
        return ($c, $c + ($t->metric('rbcs_write_queue') // 0));
    };
    my $busy = _wait_until(5, sub {
        my ($c, $all) = $in_flight->();
        $c >= 1 && $all >= 2;
    });
    sleep 0.3;
    (undef, $res->{in_flight}) = $in_flight->();
    my $t0 = time;
    kill $sig, $master;
    sleep($o{hold} // 1);
    _while_held($t, $res, $master, @old);
    my $released = time;
    $lock->commit;
    waitpid($kid, 0);
    my $answers = $JSON->decode(RBCS::Test::_slurp($file) || '[]');
    $res->{answered} = {};
    $res->{answered}{ $_->{status} // 'none' }++ for @$answers;
    $res->{answer_after_release} = max(map { $_->{t} // 0 } @$answers) - ($released - $t0);
    my $gone = _wait_until(20, sub { !grep { RBCS::Test::_alive($_) } @old });
    $res->{old_exited_after_release} = defined $gone ? $gone - $released : undef;
    if ($sig eq 'QUIT') {
        my $mg = _wait_until(20, sub { !RBCS::Test::_alive($master) });
        $res->{master_exited_after_release} = defined $mg ? $mg - $released : undef;
    }
    # the old workers' connections are gone, closed with COM_QUIT: the
    # server shows only what the new workers' pools count (they open
    # theirs as their load asks, not as many as the old ones had)
    my $settled = _wait_until(10, sub {
        return $conns->() == 0 if $sig eq 'QUIT';
        my $n = $pool->();
        $res->{conns_expected} = $n if defined $n;
        return defined $n;
    });
    $res->{conns_expected} = 0 if $sig eq 'QUIT';
    $res->{conns_after} = $conns->();
    $res->{conns_settled} = defined $settled ? $settled - $released : undef;
    $res->{aborted_clients_after} = _aborted_clients($adm);
    if ($o{redis}) {
        my $want_r = $sig eq 'QUIT' ? 0 : $redis_want;
        _wait_until(5, sub { ($redis_conns->() // 0) == $want_r });
        $res->{redis_after} = $redis_conns->();
    }
    @$res{qw(applied entries)} = $lock->selectrow_array(q{SELECT
        (SELECT COUNT(*) FROM transactions
          WHERE transaction_id LIKE ? AND status = 'COMPLETED'),
        (SELECT COUNT(*) FROM entries WHERE transaction_id LIKE ?)},
        undef, ("$tag-%") x 2);
    $lock->disconnect;
    $adm->disconnect;
    return $res;
}

# The burst of @$req in a child (the caller goes on meanwhile), its
# answers' status, time and error written to $file as JSON (the burst's
# own files in $tmp).  The pid.
sub _burst_child {
    my ($port, $req, $tmp, $file) = @_;
    my $kid = fork // croak "fork: $!";
    return $kid if $kid;
    my @r = burst($port, $req, procs => 2, timeout => 30, tmp => $tmp);
    open my $fh, '>', $file or POSIX::_exit(1);
    print $fh $JSON->encode([ map { { status => $_->{status}, t => $_->{t},
                                      err => $_->{err} } } @r ]);
    close $fh;
    POSIX::_exit(0);
}

# the connections MariaDB closed without COM_QUIT
sub _aborted_clients {
    my ($adm) = @_;
    my ($v) = $adm->selectrow_array(q{SELECT VARIABLE_VALUE
        FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'ABORTED_CLIENTS'});
    return $v;
}

# Redis's connections (without redis-cli's own)
sub _redis_conns {
    my ($redis) = @_;
    my $l = $redis ? $redis->cli('CLIENT', 'LIST') : undef;
    return defined $l ? scalar grep { !/cmd=client/ } split /\n/, $l : undef;
}

# While lifecycle's transfers are held after the signal: the old workers
# alive; after HUP the new workers and whether they serve meanwhile, after
# QUIT whether the listener is closed
sub _while_held {
    my ($t, $res, $master, @old) = @_;
    $res->{old_alive_while_held} = scalar grep { RBCS::Test::_alive($_) } @old;
    $res->{master_alive_while_held} = RBCS::Test::_alive($master) ? 1 : 0;
    if ($res->{signal} eq 'HUP') {
        my %old = map { $_ => 1 } @old;
        $res->{new_workers} = scalar grep { !$old{$_} } RBCS::Test::_children($master);
        # a new request is served by the new workers meanwhile
        my $r = eval { $t->get('/healthz', timeout => 3) };
        $res->{served_during} = $r ? $r->{status} : 0;
    } else {
        $res->{listener_closed} = RBCS::Test::_can_connect($t->port) ? 0 : 1;
    }
}

# ------------------------------------------------------- Redis partition --

# A TCP relay from a free port to $port, in a child; kill it to cut every
# connection through it (and refuse new ones).  Returns (pid, port).
sub relay {
    my ($port) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Listen => 64, ReuseAddr => 1, Proto => 'tcp') or croak "relay: $!";
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        my $sel = IO::Select->new($l);
        my %peer;
        while (1) {
            for my $fh ($sel->can_read(0.1)) {
                if ($fh == $l) {
                    my $c = $l->accept or next;
                    my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                        PeerPort => $port, Proto => 'tcp') or do { close $c; next };
                    @peer{ $c, $u } = ($u, $c);
                    $sel->add($c, $u);
                    next;
                }
                my $to = $peer{$fh} // next;
                my $n = sysread($fh, my $buf, 65536);
                if (!$n) {
                    $sel->remove($fh, $to);
                    delete @peer{ $fh, $to };
                    close $fh;
                    close $to;
                    next;
                }
                syswrite($to, $buf);
            }
        }
    }
    my $p = $l->sockport;
    close $l;
    return ($pid, $p);
}

# Two pods sharing the database and the channel: pod B reaches Redis
# directly, pod A through a relay that is then cut.  Pod B's subscription
# stays up.  A transfer acknowledged by pod A must reach pod B's reads
# within the documented bound (1 s while B's subscription is up; ttl while
# it is down).  Returns what pod B answered, second by second.
sub redis_partition {
    my (%o) = @_;
    my $redis = $o{redis};
    my ($rpid, $rport) = relay($redis->port);
    my %c = %{ $o{common} // {} };
    delete $c{redis_port};
    my $b = RBCS::Test->new(%c, redis_port => $redis->port,
                            name => 'resilience_partition', conf => $o{conf});
    my $a = RBCS::Test->new(%c, redis_port => $rport, pod_of => $b,
                            conf => $o{conf});
    my $res = {};
    # both pods have Redis; pod B's subscription is up before it caches X
    # (an entry filled before the subscription came up is trusted for ttl
    # only)
    my $up = qr/redis subscription connection to \S+ is (?:up|back)/;
    $res->{b_sub_up_before} = defined _wait_until(15, sub { $b->error_log =~ $up }) ? 1 : 0;
    $res->{a_cmd_up_before} = defined _wait_until(15, sub {
        $a->error_log =~ /redis command connection to \S+ is (?:up|back)/ }) ? 1 : 0;
    sleep 0.2;
    $b->post_json('/accounts', { accountNumber => 'X', initialBalance => '100.00' });
    $b->post_json('/accounts', { accountNumber => 'Y' });
    $res->{before} = [ @{ $b->balance('X') // {} }{qw(version tier)} ];
    kill 'KILL', $rpid;                       # pod A loses Redis, B does not
    waitpid($rpid, 0);
    sleep 1.5;
    my $r = $a->transfer('part-1', qw(X Y 1.00));
    $res->{transfer} = $r->{status};
    $res->{acked_version} = (eval { $r->json } // {})->{sourceVersion};
    my $t0 = time;
    my $secs = $o{secs} // 6;
    while (time - $t0 < $secs) {
        sleep 0.5;
        push @{ $res->{reads} }, [ time - $t0, @{ $b->balance('X') // {} }{qw(version tier)} ];
    }
    $res->{strong_version} = ($b->balance('X', '?consistency=strong') // {})->{version};
    my @stale = grep { ($_->[1] // 0) < ($res->{acked_version} // 0) } @{ $res->{reads} };
    $res->{stale_reads} = scalar @stale;
    $res->{last_stale} = @stale ? $stale[-1][0] : undef;
    # past the bound: ttl (2 s) and a margin
    $res->{stale_late} = scalar grep { $_->[0] > ($o{ttl} // 2) + 0.5 } @stale;
    $res->{b_sub_down} = $b->error_log =~ /redis subscription.*lost/ ? 1 : 0;
    $a->stop;
    $b->stop;
    return $res;
}

# ------------------------------------------------------------------- logs --

# error.log lines by level and message (numbers and addresses blanked)
sub log_summary {
    my (@logs) = @_;
    my %c;
    for my $log (@logs) {
        for my $l (split /\n/, $log) {
            next unless $l =~ /\[(\w+)\]\s+\d+#\d+:\s+(?:\*\d+\s+)?(.*)$/;
            my ($lvl, $msg) = ($1, $2);
            next if $lvl eq 'notice' || $lvl eq 'info' || $lvl eq 'debug';
            $msg =~ s/, client: .*//;
            $msg =~ s/\b[0-9a-f]{40}\b/RUNID/g;
            $msg =~ s/\b\d+\b/N/g;
            $msg = substr($msg, 0, 140);
            $c{"[$lvl] $msg"}++;
        }
    }
    return \%c;
}

1;
