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
# Every transfer a process of the suite sends is written to a record file
# of its own under dir (rec.<name>): "A" lines for attempts, "F" lines for
# the final outcome the client saw, "X" lines for requests the client
# aborted on purpose.  The audit loads the final outcomes into a table of
# the service's database and checks them against transactions/entries in
# SQL.  Real clients retry an unknown outcome (503, no answer) with the same
# transactionId: so do these.

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
        log        => $o{log} // sub { print STDERR @_, "\n" },
        faults     => [],
        audits     => [],
        probe_seq  => 0,
        gen        => 0,
    }, $class;
    mkdir $self->{dir};
    -d $self->{dir} or croak "$self->{dir}: $!";
    $self->{accounts} = [ map { sprintf 'R%02d', $_ } 1 .. $self->{naccounts} ];
    return $self;
}

sub dir      { $_[0]{dir} }
sub pods     { @{ $_[0]{pods} } }
sub faults   { @{ $_[0]{faults} } }
sub audits   { @{ $_[0]{audits} } }
sub accounts { @{ $_[0]{accounts} } }

sub msg { my $self = shift; $self->{log}->(join '', @_) }

sub pod_name {
    my ($self, $i) = @_;
    return 'pod' . ($i + 1);
}

# the accounts the clients move money between, the probe's and the abort
# fault's
sub open_accounts {
    my ($self) = @_;
    my $t = $self->{pods}[0];
    my @open = ((map { [ $_, $self->{initial} ] } $self->accounts),
                [ 'PA', '1000000.00' ], [ 'PB', '1000000.00' ],
                [ 'XA', '1000000.00' ], [ 'XB', '1000000.00' ]);
    for my $a (@open) {
        my $r = $t->post_json('/accounts',
            { accountNumber => $a->[0], initialBalance => $a->[1] });
        croak "opening $a->[0]: $r->{status} $r->{body}"
            unless ($r->{status} // 0) == 201 || ($r->{status} // 0) == 200;
    }
    return $self;
}

# ------------------------------------------------------------ one transfer --

sub transfer_body {
    my ($id, $src, $dst, $amount) = @_;
    return $JSON->encode({ transactionId => $id, sourceAccountNumber => $src,
                           destinationAccountNumber => $dst,
                           amount => $amount });
}

# one attempt on one pod: { status (0: no answer), ra, json, t0, t1, err }
sub attempt {
    my ($self, $pod, $id, $src, $dst, $amount, $timeout) = @_;
    my $t = $self->{pods}[$pod];
    my $t0 = time;
    my $r = eval {
        $t->request('POST', '/accounts/transactions',
            body => transfer_body($id, $src, $dst, $amount),
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

# Send a transfer until its outcome is known, as a real client does:
# 201/200 COMPLETED and 422/404 REJECTED are final; a 503 (Retry-After)
# or a connection that broke without an answer is retried with the same
# id, on any pod; past give_up seconds the outcome stays UNKNOWN.
# Writes A and F lines to $fh, problems as P lines.
sub transfer_final {
    my ($self, $fh, $id, $src, $dst, $amount, %o) = @_;
    my $npods = @{ $self->{pods} };
    my $start = time;
    my $give_up = $o{give_up} // $self->{give_up};
    my ($res, $outcome, $n) = (undef, undef, 0);
    while (1) {
        $n++;
        my $pod = $o{pod} // int rand $npods;
        $res = $self->attempt($pod, $id, $src, $dst, $amount, $o{timeout});
        my $s = $res->{status};
        printf $fh "A\t%s\t%d\t%d\t%.4f\t%.4f\n", $id, $pod, $s, $res->{t0},
            $res->{t1};
        if ($s == 201 || $s == 200) {
            my $j = $res->{json} // {};
            if (($j->{transactionId} // '') ne $id
                || ($j->{status} // '') ne 'COMPLETED'
                || ($j->{amount} // '') ne $amount)
            {
                print $fh "P\t$id: $s with an unexpected body: "
                    . substr($res->{body} // '', 0, 200) . "\n";
            }
            print $fh "P\t$id: the first attempt of a fresh id answered 200"
                . " (a replay)\n" if $s == 200 && $n == 1 && $o{fresh};
            $outcome = 'COMPLETED';
            last;
        }
        if ($s == 422 || $s == 404) {
            $outcome = 'REJECTED';
            last;
        }
        if ($s == 409) {
            print $fh "P\t$id: 409 on a retry with the same fields: $res->{body}\n";
            $outcome = 'CONFLICT';
            last;
        }
        if ($s == 503 || $s == 429) {
            print $fh "P\t$id: $s without Retry-After\n"
                unless defined $res->{ra} && $res->{ra} =~ /^\d+$/;
        } elsif ($s != 0) {
            print $fh "P\t$id: unexpected $s: "
                . substr($res->{body} // '', 0, 200) . "\n";
        }
        if (time - $start > $give_up) {
            $outcome = 'UNKNOWN';
            last;
        }
        # Retry-After is 1 s; the suite waits a third of it, jittered, to
        # keep the run short (it retries the same id either way)
        sleep($s ? 0.25 + rand(0.25) : 0.05 + rand(0.1));
    }
    printf $fh "F\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.4f\t%.4f\t%d\n", $id, $src,
        $dst, $amount, $outcome, $res->{status}, $n, $start, $res->{t1},
        $res->{pod};
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

sub _client {
    my ($self, $k) = @_;
    srand($$ ^ int(time * 1000));
    my $fh = $self->_open_rec("client$k");
    my @acc = $self->accounts;
    my $dir = $self->{dir};
    my ($i, $acks) = (0, 0);
    my %seen;   # account => highest version read or acknowledged, per pod
    while (!-e "$dir/stop") {
        if (-e "$dir/pause") {
            my $gen = _slurp("$dir/pause") // '';
            _spew("$dir/paused.$k", $gen);
            sleep 0.02 while -e "$dir/pause" && !-e "$dir/stop";
            next;
        }
        $i++;
        my $src = $acc[int rand @acc];
        my $dst;
        if (rand() < 0.04) {
            $dst = 'NO-SUCH-ACCOUNT';             # a 404, recorded
        } else {
            do { $dst = $acc[int rand @acc] } while $dst eq $src;
        }
        my $c = 1 + int rand $self->{max_cents};
        my $amount = sprintf '%d.%02d', int($c / 100), $c % 100;
        my $f = $self->transfer_final($fh, "c$k-$i", $src, $dst, $amount,
                                      fresh => 1);
        next unless $f->{outcome} eq 'COMPLETED';
        next if ++$acks % $self->{read_every};
        # read-your-writes: a balance read on the pod that acknowledged
        # never shows an older version of the source account
        my $res = $f->{res};
        my $v = $res->{json}{sourceVersion} // next;
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
                last;
            }
            print $fh "R\tunavailable\n" if $_ == 10;
            sleep 0.1;
        }
    }
    close $fh;
}

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    return <$fh>;
}

sub _spew {
    my ($f, $s) = @_;
    open my $fh, '>', "$f.tmp" or return;
    print $fh $s;
    close $fh;
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
            (_slurp("$self->{dir}/paused.$k") // '') ne $gen
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

# { final => { id => {...} }, attempts => [ [t1, status, pod, id] ],
#   problems => [...], dup => [...], reads => { ok, unavailable } }
sub records {
    my ($self) = @_;
    my (%final, @attempts, @problems, @dup, %reads, %aborted);
    for my $file (sort glob "$self->{dir}/rec.*") {
        open my $fh, '<', $file or next;
        while (my $l = <$fh>) {
            chomp $l;
            my @f = split /\t/, $l;
            if ($f[0] eq 'A') {
                push @attempts, [ $f[5], $f[3], $f[2], $f[1] ];
            } elsif ($f[0] eq 'F') {
                my $rec = { id => $f[1], src => $f[2], dst => $f[3],
                            amount => $f[4], outcome => $f[5],
                            status => $f[6], attempts => $f[7],
                            t0 => $f[8], t1 => $f[9], pod => $f[10] };
                if (my $old = $final{ $f[1] }) {
                    push @dup, "$f[1]: reported $old->{outcome} ($old->{status})"
                        . " and then $f[5] ($f[6])"
                        if $old->{outcome} ne $f[5];
                    next;
                }
                $final{ $f[1] } = $rec;
            } elsif ($f[0] eq 'P') {
                push @problems, $f[1];
            } elsif ($f[0] eq 'R') {
                $reads{ $f[1] }++;
            } elsif ($f[0] eq 'X') {
                $aborted{ $f[1] } = $f[2];
            }
        }
    }
    return { final => \%final, attempts => \@attempts, problems => \@problems,
             dup => \@dup, reads => \%reads, aborted => \%aborted };
}

# ------------------------------------------------------------------- audits --

sub dbh { $_[0]{pods}[0]->dbh }

# The audit, with the clients paused: money conserved, no negative balance,
# the ledger agrees with the balances, every acknowledged transfer applied
# exactly once, nothing applied that was reported rejected, a sample of
# outcomes replayed unchanged, and balances read through every worker of
# every pod equal the database.
sub audit {
    my ($self, $label, %o) = @_;
    my $paused = $self->pause;
    my $t0 = time;
    my $a = { label => $label, paused_in => $paused };
    my $recs = $self->records;
    $a->{recs} = $recs;
    $self->_audit_sql($a, $recs);
    $self->_audit_replays($a, $recs) unless $o{no_replays};
    $self->_audit_reads($a);
    $a->{took} = time - $t0;
    $self->resume unless $o{keep_paused};
    my @fail;
    push @fail, "total $a->{total} != $a->{initial_total}"
        if $a->{total} ne $a->{initial_total};
    push @fail, "$a->{negative} negative balances" if $a->{negative};
    push @fail, "ledger disagrees with balances: @{ $a->{ledger_bad} }"
        if @{ $a->{ledger_bad} };
    push @fail, "transactions whose entries are wrong: @{ $a->{entries_bad} }"
        if @{ $a->{entries_bad} };
    push @fail, "acknowledged but not applied exactly once: @{ $a->{ack_bad} }"
        if @{ $a->{ack_bad} };
    push @fail, "reported rejected but applied: @{ $a->{rej_applied} }"
        if @{ $a->{rej_applied} };
    push @fail, "reported rejected but not recorded: @{ $a->{rej_unrecorded} }"
        if @{ $a->{rej_unrecorded} };
    push @fail, "applied but never sent by the suite: @{ $a->{phantom} }"
        if @{ $a->{phantom} };
    push @fail, "outcome changed: @{ $recs->{dup} }" if @{ $recs->{dup} };
    push @fail, "replay differs: @{ $a->{replay_bad} }"
        if @{ $a->{replay_bad} // [] };
    push @fail, "reads differ from the database after $a->{read_bound} s: "
        . join('; ', @{ $a->{read_bad} }) if @{ $a->{read_bad} };
    push @fail, "workers never reached by the reads: @{ $a->{unreached} }"
        if @{ $a->{unreached} };
    $a->{fail} = \@fail;
    $a->{ok} = !@fail;
    push @{ $self->{audits} }, $a;
    return $a;
}

sub _first { my ($n, @l) = @_; return @l > $n ? (@l[0 .. $n - 1], '...') : @l }

sub _audit_sql {
    my ($self, $a, $recs) = @_;
    my $dbh = $self->dbh;

    # the outcomes the clients saw, as a table
    $dbh->do(q{CREATE TABLE IF NOT EXISTS resilience_outcomes (
        id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        src VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        dst VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        amount DECIMAL(36,18) NOT NULL,
        outcome VARCHAR(16) NOT NULL,
        PRIMARY KEY (id)) ENGINE=InnoDB});
    $dbh->do('TRUNCATE TABLE resilience_outcomes');
    my @rows = values %{ $recs->{final} };
    while (my @chunk = splice @rows, 0, 500) {
        $dbh->do('INSERT INTO resilience_outcomes (id, src, dst, amount, outcome) VALUES '
            . join(',', map { '(' . join(',', map { $dbh->quote($_) }
                   @$_{qw(id src dst amount outcome)}) . ')' } @chunk));
    }

    my ($total, $initial, $naccounts, $negative) = $dbh->selectrow_array(
        q{SELECT CAST(SUM(balance) AS DECIMAL(38,2)),
                 CAST(SUM(initial_balance) AS DECIMAL(38,2)), COUNT(*),
                 SUM(balance < 0) FROM accounts});
    @$a{qw(total initial_total naccounts negative)}
        = ($total, $initial, $naccounts, $negative + 0);

    # every balance and version is what its ledger entries add up to
    $a->{ledger_bad} = [ _first(10, map { $_->[0] } @{ $dbh->selectall_arrayref(q{
        SELECT a.account_number FROM accounts a
          LEFT JOIN (SELECT account_number, SUM(amount) s, COUNT(*) n,
                            MAX(version) v, MIN(version) v0
                       FROM entries GROUP BY account_number) e
            ON e.account_number = a.account_number
         WHERE e.n IS NULL OR a.balance <> e.s OR a.version <> e.n
            OR a.version <> e.v OR e.v0 <> 1}) }) ];

    # a completed transaction has exactly its two entries, a rejected none;
    # no entry without its transaction
    $a->{entries_bad} = [ _first(10, map { $_->[0] } @{ $dbh->selectall_arrayref(q{
        SELECT t.transaction_id FROM transactions t
          LEFT JOIN (SELECT transaction_id, COUNT(*) n, SUM(amount) s,
                            MAX(amount) mx,
                            SUM(account_number = counterparty) self
                       FROM entries WHERE type = 'TRANSFER'
                      GROUP BY transaction_id) e
            ON e.transaction_id = t.transaction_id
         WHERE (t.status = 'COMPLETED'
                AND (e.n IS NULL OR e.n <> 2 OR e.s <> 0 OR e.mx <> t.amount))
            OR (t.status = 'REJECTED' AND e.n IS NOT NULL)
        UNION ALL
        SELECT e.transaction_id FROM entries e
          LEFT JOIN transactions t ON t.transaction_id = e.transaction_id
         WHERE e.type = 'TRANSFER' AND t.transaction_id IS NULL}) }) ];

    # every acknowledged transfer applied exactly once, as acknowledged
    $a->{ack_bad} = [ _first(10, map { "$_->[0] ($_->[1])" } @{ $dbh->selectall_arrayref(q{
        SELECT c.id, COALESCE(t.status, 'missing')
          FROM resilience_outcomes c
          LEFT JOIN transactions t ON t.transaction_id = c.id
          LEFT JOIN (SELECT transaction_id, COUNT(*) n FROM entries
                      WHERE type = 'TRANSFER' GROUP BY transaction_id) e
            ON e.transaction_id = c.id
         WHERE c.outcome = 'COMPLETED'
           AND (t.status IS NULL OR t.status <> 'COMPLETED'
                OR t.amount <> c.amount OR t.source_account <> c.src
                OR t.destination_account <> c.dst
                OR e.n IS NULL OR e.n <> 2)}) }) ];

    # nothing applied that was reported rejected; the rejection recorded
    $a->{rej_applied} = [ _first(10, map { $_->[0] } @{ $dbh->selectall_arrayref(q{
        SELECT c.id FROM resilience_outcomes c
          JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'REJECTED' AND t.status <> 'REJECTED'
        UNION ALL
        SELECT c.id FROM resilience_outcomes c
          JOIN entries e ON e.transaction_id = c.id
         WHERE c.outcome = 'REJECTED'}) }) ];
    $a->{rej_unrecorded} = [ _first(10, map { $_->[0] } @{ $dbh->selectall_arrayref(q{
        SELECT c.id FROM resilience_outcomes c
          LEFT JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'REJECTED' AND t.transaction_id IS NULL}) }) ];

    # a transaction for which no process of the suite has an outcome
    $a->{phantom} = [ _first(10, map { $_->[0] } @{ $dbh->selectall_arrayref(q{
        SELECT t.transaction_id FROM transactions t
          LEFT JOIN resilience_outcomes c ON c.id = t.transaction_id
         WHERE c.id IS NULL}) }) ];

    # counts
    my %by;
    $by{ $_->{outcome} }++ for values %{ $recs->{final} };
    $a->{by_outcome} = \%by;
    ($a->{unknown_applied}) = $dbh->selectrow_array(q{
        SELECT COUNT(*) FROM resilience_outcomes c
          JOIN transactions t ON t.transaction_id = c.id
         WHERE c.outcome = 'UNKNOWN' AND t.status = 'COMPLETED'});
    ($a->{db_completed}, $a->{db_rejected}) = $dbh->selectrow_array(q{
        SELECT SUM(status = 'COMPLETED'), SUM(status = 'REJECTED')
          FROM transactions});
    $a->{db_completed} //= 0;
    $a->{db_rejected} //= 0;
}

# a sample of final outcomes asked again: the same outcome
sub _audit_replays {
    my ($self, $a, $recs) = @_;
    my @ids = grep { $_->{outcome} eq 'COMPLETED' || $_->{outcome} eq 'REJECTED' }
              values %{ $recs->{final} };
    @ids = (shuffle(@ids))[0 .. min(11, $#ids)];
    my @bad;
    my $fh = $self->ctl_fh;
    for my $rec (@ids) {
        my $res = $self->attempt(int rand @{ $self->{pods} }, $rec->{id},
            $rec->{src}, $rec->{dst}, $rec->{amount}, 5);
        my $s = $res->{status};
        my $ok = $rec->{outcome} eq 'COMPLETED'
            ? $s == 200 && ($res->{json}{status} // '') eq 'COMPLETED'
            : ($s == 422 || $s == 404);
        push @bad, "$rec->{id} was $rec->{outcome}, now $s" unless $ok;
    }
    $a->{replays} = scalar @ids;
    $a->{replay_bad} = \@bad;
}

sub _audit_reads {
    my ($self, $a) = @_;
    my $dbh = $self->dbh;
    my @acc = ($self->accounts, qw(PA PB XA XB));
    my $t0 = time;
    my $deadline = $t0 + $self->{ttl} + 2;
    my (%seen, @bad, $first_bad, $reads);
    my %want = map { $_ => 1 } @acc;
    my $round = 0;
    while (1) {
        $round++;
        my %db = map { $_->[0] => [ $_->[1], $_->[2] ] } @{ $dbh->selectall_arrayref(
            q{SELECT account_number, CAST(balance AS DECIMAL(38,2)), version
                FROM accounts}) };
        @bad = ();
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
                    && ($j->{version} // -1) == $d->[1];
                push @bad, sprintf '%s on %s: %s v%s (%s), database %s v%s',
                    $n, $self->pod_name($p), $r->{status} // 'none',
                    $j->{version} // '?', $r->{headers}{'x-rbcs-cache'} // '?',
                    $d ? @$d : ('none', '?');
            }
        }
        my %u;
        @bad = grep { !$u{$_}++ } @bad;
        $first_bad //= [ @bad ];
        # every worker that is running now must have answered some reads
        my @unreached;
        for my $p (0 .. $#{ $self->{pods} }) {
            push @unreached, map { $self->pod_name($p) . " worker $_" }
                grep { !$seen{$p}{$_} } $self->{pods}[$p]->worker_pids;
        }
        $a->{unreached} = \@unreached;
        last if (!@bad && !@unreached) || time > $deadline;
        if (@bad) {
            %want = map { (split / /, $_)[0] => 1 } @bad;
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
                timeout => 4, give_up => $limit - (time - $since), fresh => 1,
                first_ok => 1);
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
    $f->{recovery} = $self->probe($f->{end});
    $f->{recovered_at} = defined $f->{recovery} ? $f->{end} + $f->{recovery} : undef;
    sleep($o{post} // 0.5);
    $f->{window} = [ $f->{inject} - 0.001, time ];
    my $a = $self->audit($name);
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

sub _wait_until {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return time if $cond->();
        sleep 0.01;
    }
    return undef;
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

sub mariadb_kill {
    my ($self, %o) = @_;
    my $m = $self->{mariadb};
    my $t0 = time;
    kill 'KILL', $m->pid;
    RBCS::Test::_wait_gone($m->pid, 10);
    sleep($o{down} // 1);
    my $t1 = time;
    $m->start;
    my $t2 = time;
    return { inject => $t0, end => $t2, restart => $t2 - $t1,
             detail => sprintf('down %.1f s, restart (crash recovery) took %.2f s',
                               $t1 - $t0, $t2 - $t1) };
}

sub mariadb_freeze {
    my ($self, %o) = @_;
    my $m = $self->{mariadb};
    my $t0 = time;
    $m->signal('STOP');
    sleep($o{secs} // 3);
    $m->signal('CONT');
    my $t1 = time;
    return { inject => $t0, end => $t1,
             detail => sprintf('SIGSTOP for %.1f s, then SIGCONT', $t1 - $t0) };
}

sub redis_kill {
    my ($self, %o) = @_;
    my $r = $self->{redis};
    unlink $r->dir . '/dump.rdb';        # restarted empty
    my $t0 = time;
    $r->signal('KILL');
    sleep($o{down} // 1);
    $r->start;
    my $t1 = time;
    return { inject => $t0, end => $t1,
             detail => sprintf('SIGKILL, restarted empty after %.1f s', $t1 - $t0) };
}

sub redis_freeze {
    my ($self, %o) = @_;
    my $r = $self->{redis};
    my $t0 = time;
    $r->signal('STOP');
    sleep($o{secs} // 2.5);
    $r->signal('CONT');
    my $t1 = time;
    return { inject => $t0, end => $t1,
             detail => sprintf('SIGSTOP for %.1f s, then SIGCONT', $t1 - $t0) };
}

sub redis_stale {
    my ($self, %o) = @_;
    my $r = $self->{redis};
    my $ts = time;
    $r->save;
    sleep($o{age} // 1.5);               # the snapshot goes stale
    my $t0 = time;
    $r->signal('KILL');
    $r->start;                           # loads the old snapshot
    my $t1 = time;
    my $keys = $r->cli('DBSIZE') // '?';
    $keys =~ s/\s+//g;
    return { inject => $t0, end => $t1,
             detail => sprintf('SAVE, %.1f s of transfers, SIGKILL, restarted '
                 . 'from the %.1f s old snapshot (%s keys)', $t0 - $ts, $t1 - $ts, $keys) };
}

# Clients that abort their transfer: after the whole request while it is in
# flight (the accounts held by a lock, so the answer cannot have come),
# FIN or RST; in the middle of the body; right after sending. Then a
# well-behaved client sends each id again and must see it applied once.
sub client_aborts {
    my ($self, %o) = @_;
    my $n = $o{n} // 8;
    my $fh = $self->ctl_fh;
    my $t0 = time;
    my @pods = @{ $self->{pods} };
    my @workers = map { [ $_->worker_pids ] } @pods;
    my $dbh = $self->{mariadb}->admin_dbh($self->{pods}[0]->dbname);
    $dbh->{AutoCommit} = 0;
    $dbh->do(q{SELECT * FROM accounts WHERE account_number IN ('XA', 'XB')
               FOR UPDATE});

    my (@ids, @socks);
    my $seq = ($self->{abort_seq} //= 0)++;
    for my $i (1 .. $n) {
        my $kind = $i % 2 ? 'fin' : 'rst';
        my $id = "ab$seq-inflight-$kind-$i";
        my $p = $i % @pods;
        my $body = transfer_body($id, $i % 3 ? qw(XA XB) : qw(XB XA), '1.00');
        my $s = _send_raw($pods[$p]->port, _post($body));
        print $fh "X\t$id\tinflight-$kind\n";
        push @socks, [ $s, $kind ];
        push @ids, [ $id, $i % 3 ? qw(XA XB) : qw(XB XA), '1.00', 'inflight' ];
    }
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
    _abort($_->[0], $_->[1]) for @socks;
    @socks = ();
    # mid-body: the headers and half the body, then gone
    for my $i (1 .. $n) {
        my $kind = $i % 2 ? 'fin' : 'rst';
        my $id = "ab$seq-midbody-$kind-$i";
        my $p = $i % @pods;
        my $body = transfer_body($id, qw(XA XB), '2.00');
        my $req = _post($body);
        my $s = _send_raw($pods[$p]->port,
                          substr($req, 0, length($req) - int(length($body) / 2)));
        print $fh "X\t$id\tmidbody-$kind\n";
        push @socks, [ $s, $kind ];
        push @ids, [ $id, qw(XA XB), '2.00', 'midbody' ];
    }
    sleep 0.2;
    _abort($_->[0], $_->[1]) for @socks;
    @socks = ();
    sleep 0.2;
    $dbh->commit;                       # the in-flight ones go on
    # right after sending, no lock: the race between answer and close
    for my $i (1 .. $n) {
        my $kind = $i % 2 ? 'fin' : 'rst';
        my $id = "ab$seq-race-$kind-$i";
        my $p = $i % @pods;
        my $body = transfer_body($id, qw(XB XA), '0.50');
        my $s = _send_raw($pods[$p]->port, _post($body));
        print $fh "X\t$id\trace-$kind\n";
        _abort($s, $kind);
        push @ids, [ $id, qw(XB XA), '0.50', 'race' ];
    }
    sleep 1;
    # what the service did with the aborted requests
    my %applied = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
        q{SELECT transaction_id, status FROM transactions
           WHERE transaction_id LIKE ?}, undef, "ab$seq-%") };
    $dbh->disconnect;
    my %kinds;
    for my $x (@ids) {
        $kinds{ $x->[4] }{sent}++;
        $kinds{ $x->[4] }{applied_before_retry}++ if $applied{ $x->[0] };
    }
    # the same ids again, by a client that waits for the answer
    my %retry;
    for my $x (@ids) {
        my $f = $self->transfer_final($fh, @$x[0 .. 3]);
        $retry{ $x->[4] }{ $f->{res}{status} }++;
    }
    my @crashed;
    for my $p (0 .. $#pods) {
        my %now = map { $_ => 1 } $pods[$p]->worker_pids;
        push @crashed, grep { !$now{$_} } @{ $workers[$p] };
    }
    my $detail = join '; ', map {
        my $k = $_;
        sprintf '%s: %d sent and aborted, %d applied before the retry, retry answered %s',
            $k, $kinds{$k}{sent}, $kinds{$k}{applied_before_retry} // 0,
            join(' ', map { "$_ x$retry{$k}{$_}" } sort keys %{ $retry{$k} })
    } qw(inflight midbody race);
    return { inject => $t0, end => time, kinds => \%kinds, retry => \%retry,
             inflight_seen => defined $inflight, crashed => \@crashed,
             midbody_applied => $kinds{midbody}{applied_before_retry} // 0,
             detail => $detail . (@crashed ? "; workers gone: @crashed" : '') };
}

sub _post {
    my ($body) = @_;
    return "POST /accounts/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
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
        my $f = { n => $n, took => time - $t0 };
        for my $x (@r) {
            my $s = $x->{status} // 0;
            $f->{status}{$s}++;
            if ($s == 503) {
                $f->{unknown_503}++ if (($x->{json} // {})->{detail} // '') =~ /not known/;
                $f->{no_retry_after}++ unless ($x->{headers}{'retry-after'} // '') =~ /^\d+$/;
                if ($x->{t} < $o{at_once}) {
                    $f->{fast_503}++;
                    push @{ $f->{fast_t} }, $x->{t};
                } else {
                    $f->{slow_503}++;
                }
            }
            $f->{slow}++ if ($x->{t} // 99) >= $o{at_once};
            $f->{other}++ unless $s == 503 || $s == 201;
        }
        my @ft = sort { $a <=> $b } @{ $f->{fast_t} // [] };
        $f->{fast_max} = @ft ? $ft[-1] : undef;
        $f->{fast_p50} = @ft ? $ft[ int($#ft / 2) ] : undef;
        delete $f->{fast_t};
        return $f;
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

    # the load stops: the pod serves again by itself
    my $back = _wait_until(30, sub {
        my $r = eval { $t->post_json('/accounts/transactions', {
            transactionId => 'ov-after-' . ++$seq, sourceAccountNumber => 'O1',
            destinationAccountNumber => 'O2', amount => '0.01' }) };
        $r && ($r->{status} // 0) == 201;
    });
    $res->{recovered} = defined $back ? $back - $release : undef;
    my ($ok, $slowest) = (0, 0);
    for my $i (1 .. 20) {
        my $t0 = time;
        my $r = $t->post_json('/accounts/transactions', {
            transactionId => 'ov-seq-' . ++$seq, sourceAccountNumber => 'O2',
            destinationAccountNumber => 'O1', amount => '0.01' });
        $slowest = max($slowest, time - $t0);
        $ok++ if ($r->{status} // 0) == 201;
    }
    $res->{after_sequential_ok} = $ok;
    $res->{after_slowest} = $slowest;
    # a burst within one worker's bound (the batch in flight and a full
    # queue behind it), all accepted
    my @req = map { _post(transfer_body('ov-burst-' . ++$seq, 'O1', 'O2', '0.01')) }
              1 .. 1 + $queue;
    my @r = burst($t->port, \@req, procs => 2);
    $res->{after_burst} = { n => scalar @r, ok => scalar grep { ($_->{status} // 0) == 201 } @r };
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
    my $metrics = eval { $t->get('/metrics')->{body} } // '';
    ($res->{queue_full_total}) = $metrics =~ /^rbcs_mysql_queue_full_total\s+(\d+)/m;
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
    my $status = sub {
        my ($v) = $adm->selectrow_array(
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?",
            undef, uc $_[0]);
        return $v;
    };
    my $lock = $m->admin_dbh($db);
    $lock->{AutoCommit} = 0;
    my $conns = sub {
        my ($c) = $adm->selectrow_array(q{SELECT COUNT(*) FROM information_schema.processlist
            WHERE db = ? AND id <> ?}, undef, $db, $lock->{mariadb_thread_id});
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
    $res->{aborted_clients_before} = $status->('Aborted_clients');
    # Redis connections (without redis-cli's own)
    my $redis_conns = sub {
        return undef unless $o{redis};
        my $l = $o{redis}->cli('CLIENT', 'LIST') // return undef;
        return scalar grep { !/cmd=client/ } split /\n/, $l;
    };
    # each worker's command connection and worker 0's subscription
    my $redis_want = @old + 1;
    _wait_until(5, sub { ($redis_conns->() // 0) == $redis_want }) if $o{redis};
    $res->{redis_before} = $redis_conns->();

    $lock->do(q{SELECT * FROM accounts WHERE account_number IN ('L1', 'L2') FOR UPDATE});
    my @req = map { _post(transfer_body("$tag-$_", 'L1', 'L2', '1.00')) } 1 .. $n;
    my $dir = $o{dir};
    my $kid = fork // croak "fork: $!";
    if ($kid == 0) {
        my @r = burst($t->port, \@req, procs => 2, timeout => 30, tmp => $dir);
        open my $fh, '>', "$dir/lifecycle-$tag" or POSIX::_exit(1);
        print $fh $JSON->encode([ map { { status => $_->{status}, t => $_->{t},
                                          err => $_->{err} } } @r ]);
        close $fh;
        POSIX::_exit(0);
    }
    # every transfer held: a worker's write batch waits for the lock in the
    # database, the worker's other transfers wait in its write queue
    my $in_flight = sub {
        my ($c) = $adm->selectrow_array(q{SELECT COUNT(*) FROM information_schema.processlist
            WHERE db = ? AND command = 'Query' AND id <> ?}, undef, $db,
            $lock->{mariadb_thread_id});
        my $m = eval { $t->get('/metrics', timeout => 3)->{body} } // '';
        my ($q) = $m =~ /^rbcs_write_queue (\d+)$/m;
        return ($c, $c + ($q // 0));
    };
    my $busy = _wait_until(5, sub {
        my ($c, $all) = $in_flight->();
        $c >= 1 && $all >= ($o{expect_busy} // 2);
    });
    sleep 0.3;
    (undef, $res->{in_flight}) = $in_flight->();
    my $t0 = time;
    kill $sig, $master;
    sleep($o{hold} // 1);
    $res->{old_alive_while_held} = scalar grep { RBCS::Test::_alive($_) } @old;
    $res->{master_alive_while_held} = RBCS::Test::_alive($master) ? 1 : 0;
    if ($sig eq 'HUP') {
        my %old = map { $_ => 1 } @old;
        $res->{new_workers} = scalar grep { !$old{$_} } RBCS::Test::_children($master);
        # a new request is served by the new workers meanwhile
        my $r = eval { $t->get('/healthz', timeout => 3) };
        $res->{served_during} = $r ? $r->{status} : 0;
    } else {
        $res->{listener_closed} = RBCS::Test::_can_connect($t->port) ? 0 : 1;
    }
    my $released = time;
    $lock->commit;
    waitpid($kid, 0);
    my $answers = $JSON->decode(_slurp("$dir/lifecycle-$tag") // '[]');
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
    $res->{aborted_clients_after} = $status->('Aborted_clients');
    if ($o{redis}) {
        my $want_r = $sig eq 'QUIT' ? 0 : $redis_want;
        _wait_until(5, sub { ($redis_conns->() // 0) == $want_r });
        $res->{redis_after} = $redis_conns->();
    }
    my ($applied) = $lock->selectrow_array(q{SELECT COUNT(*) FROM transactions
        WHERE transaction_id LIKE ? AND status = 'COMPLETED'}, undef, "$tag-%");
    my ($entries) = $lock->selectrow_array(q{SELECT COUNT(*) FROM entries
        WHERE transaction_id LIKE ?}, undef, "$tag-%");
    $res->{applied} = $applied;
    $res->{entries} = $entries;
    $lock->disconnect;
    $adm->disconnect;
    return $res;
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
    my $b = RBCS::Test->new(%c, workers => 1, redis_port => $redis->port,
                            name => 'resilience_partition', log_level => 'info');
    my $a = RBCS::Test->new(%c, workers => 1, redis_port => $rport, pod_of => $b,
                            log_level => 'info');
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
    my $r = $b->get('/accounts/X/balance');
    $res->{before} = [ (eval { $r->json } // {})->{version}, $r->{headers}{'x-rbcs-cache'} ];
    kill 'KILL', $rpid;                       # pod A loses Redis, B does not
    waitpid($rpid, 0);
    sleep 1.5;
    $r = $a->post_json('/accounts/transactions', { transactionId => 'part-1',
        sourceAccountNumber => 'X', destinationAccountNumber => 'Y',
        amount => '1.00' });
    $res->{transfer} = $r->{status};
    $res->{acked_version} = (eval { $r->json } // {})->{sourceVersion};
    my $t0 = time;
    my $secs = $o{secs} // 6;
    while (time - $t0 < $secs) {
        sleep 0.5;
        my $x = $b->get('/accounts/X/balance');
        push @{ $res->{reads} }, [ time - $t0, (eval { $x->json } // {})->{version},
                                   $x->{headers}{'x-rbcs-cache'} ];
    }
    my $s = $b->get('/accounts/X/balance?consistency=strong');
    $res->{strong_version} = (eval { $s->json } // {})->{version};
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
            next unless $l =~ /\[(\w+)\]\s+\d+#\d+:\s+(?:\*\d+\s+)?(.*)$/
                || $l =~ /\[(\w+)\]\s+\d+#\d+:\s+(.*)$/;
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
