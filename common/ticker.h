/* A thread that calls a function at a fixed period until it is stopped: the shape of every
 * "every N ms, look and act" loop in Brume's daemons (the worker's idle freezer and its
 * registration publisher). The period counts from the end of one call to the start of the next;
 * stopping wakes the thread at once and waits for a call under way. */
#ifndef BRUME_TICKER_H
#define BRUME_TICKER_H

#include <stdint.h>

typedef struct brume_ticker brume_ticker;

/* Starts the thread: fn(arg) after period_ms (> 0), then every period_ms. Aborts if the thread
 * cannot be created. */
brume_ticker *brume_ticker_start(int64_t period_ms, void (*fn)(void *arg), void *arg);

/* Stops and joins the thread (after a call under way returns), frees t. NULL is fine. */
void brume_ticker_stop(brume_ticker *t);

#endif
