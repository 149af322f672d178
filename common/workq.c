/* The job pool: one mutex, one condition variable, a FIFO list. */
#include "workq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct job {
  brume_workq_fn fn;
  void *arg;
  struct job *next;
} job;

struct brume_workq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job *head, *tail;
  bool stopping, joined;
  int n;
  pthread_t *threads;
};

static void *run(void *p) {
  brume_workq *q = p;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->head == NULL && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
    job *j = q->head;
    if (j == NULL) break; /* stopping and drained */
    q->head = j->next;
    if (q->head == NULL) q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    j->fn(j->arg);
    free(j);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

brume_workq *brume_workq_new(int threads) {
  BRUME_ENSURE(threads >= 1);
  brume_workq *q = brume_xcalloc(1, sizeof(*q));
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  q->n = threads;
  q->threads = brume_xcalloc((size_t)threads, sizeof(pthread_t));
  for (int i = 0; i < threads; i++) BRUME_ENSURE(pthread_create(&q->threads[i], NULL, run, q) == 0);
  return q;
}

int brume_workq_push(brume_workq *q, brume_workq_fn fn, void *arg, brume_err **err) {
  job *j = brume_xcalloc(1, sizeof(*j));
  j->fn = fn;
  j->arg = arg;
  pthread_mutex_lock(&q->mu);
  if (q->stopping) {
    pthread_mutex_unlock(&q->mu);
    free(j);
    return brume_err_set(err, BRUME_UNAVAILABLE, "the worker is shutting down");
  }
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

void brume_workq_stop(brume_workq *q) {
  pthread_mutex_lock(&q->mu);
  q->stopping = true;
  bool joined = q->joined;
  q->joined = true;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  if (joined) return;
  for (int i = 0; i < q->n; i++) pthread_join(q->threads[i], NULL);
}

void brume_workq_free(brume_workq *q) {
  if (q == NULL) return;
  brume_workq_stop(q);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q->threads);
  free(q);
}
