
/*
 * Copyright (C) RBCS
 */


/*
 * libFuzzer harness of the write path's judge (src/ngx_rbcs_ledger.c),
 * checked against the reference model of t/unit/test_ledger.c: the
 * property test's own rounds (random operation sequences cut into random
 * batches, every outcome the model's, money conserved, floors kept) with
 * the fuzzer's input as the source of every random choice instead of
 * rand().  Past the input's end the choices come from a small generator
 * seeded by the input's length (a constant stream could keep the model's
 * "pick another account" loop from ever ending).  A disagreement aborts.
 */


#include <stdio.h>
#include <stdlib.h>


static const unsigned char  *fuzz_pos, *fuzz_end;
static unsigned              fuzz_state;


static int
fuzz_rand(void)
{
    int  v;

    if (fuzz_pos >= fuzz_end) {
        fuzz_state = fuzz_state * 1103515245 + 12345;
        return (fuzz_state >> 16) & 0x7fff;
    }

    v = *fuzz_pos++;

    if (fuzz_pos < fuzz_end) {
        v = v << 8 | *fuzz_pos++;
    }

    return v;
}


/* the model and the property round, with the fuzzer's choices */

#define rand()  fuzz_rand()
#define main    test_ledger_main

#include "test_ledger.c"

#undef rand
#undef main


int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int  batches;

    fuzz_pos = data;
    fuzz_end = data + size;
    fuzz_state = (unsigned) size;

    if (property_round(0, T_MAX_OPS, &batches) != 0) {
        fprintf(stderr, "the judge and the model disagree (see above)\n");
        abort();
    }

    return 0;
}
