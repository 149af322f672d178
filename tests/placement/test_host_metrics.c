/* Unit tests for placement/host_metrics: the per-host gauges of /metrics, set by the collector
 * from hosts in ListHosts' form at each render (exact lines, bytes from MiB, CPUs from vCPU
 * milli, one series per state, the info gauge's accelerator), a host that left the list gone at
 * the next render, and nothing left once stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "host_metrics.h"
#include "mem.h"

/* The hosts the fake ListHosts answers: the first n_hosts of these. */
static const struct fake_host {
  const char *id;
  Brume__Accelerator accel;
  uint32_t vcpus, vcpu_milli, memory_mib, free_mib, reserved_mib, available_mib;
  uint32_t idle, invoking, pool_ready;
  bool draining;
} fake_hosts[] = {
    {"w1", BRUME__ACCELERATOR__ACCELERATOR_KVM, 8, 2500, 4096, 3840, 128, 20112, 3, 1, 2, true},
    {"w2", BRUME__ACCELERATOR__ACCELERATOR_TCG, 2, 144, 1024, 1024, 0, 900, 0, 0, 0, false},
    {"w3", BRUME__ACCELERATOR__ACCELERATOR_UNSPECIFIED, 1, 0, 512, 512, 0, 0, 0, 0, 0, false},
};
static size_t n_hosts;
static int lists; /* calls of the fake ListHosts */

static Brume__HostInfo **fake_list(void *user, size_t *n) {
  (void)user;
  lists++;
  Brume__HostInfo **v = brume_xcalloc(n_hosts + 1, sizeof(*v));
  for (size_t i = 0; i < n_hosts; i++) {
    const struct fake_host *f = &fake_hosts[i];
    Brume__HostInfo *h = brume_xmalloc(sizeof(*h));
    brume__host_info__init(h);
    h->host_id = brume_xstrdup(f->id);
    h->accelerator = f->accel;
    h->vcpus = f->vcpus;
    h->vcpu_milli_committed = f->vcpu_milli;
    h->memory_mib = f->memory_mib;
    h->free_memory_mib = f->free_mib;
    h->reserved_memory_mib = f->reserved_mib;
    h->host_memory_available_mib = f->available_mib;
    h->pool_ready = f->pool_ready;
    h->draining = f->draining;
    h->n_sandboxes_by_state = 2;
    h->sandboxes_by_state = brume_xcalloc(2, sizeof(*h->sandboxes_by_state));
    for (size_t s = 0; s < 2; s++) {
      Brume__SandboxStateCount *c = brume_xmalloc(sizeof(*c));
      brume__sandbox_state_count__init(c);
      c->state = s == 0 ? BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE
                        : BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING;
      c->count = s == 0 ? f->idle : f->invoking;
      h->sandboxes_by_state[s] = c;
    }
    v[i] = h;
  }
  *n = n_hosts;
  return v;
}

static void fake_free(Brume__HostInfo **v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (size_t s = 0; s < v[i]->n_sandboxes_by_state; s++) free(v[i]->sandboxes_by_state[s]);
    free(v[i]->sandboxes_by_state);
    free(v[i]->host_id);
    free(v[i]);
  }
  free(v);
}

/* Asserts that text holds line as a whole line. */
static void assert_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
    if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
  fail_msg("/metrics lacks the line \"%s\":\n%s", line, text);
}

static void test_hosts(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_host_metrics *m = brume_host_metrics_start(reg, fake_list, fake_free, NULL);
  n_hosts = 3;
  lists = 0;
  char *text = brume_metrics_render(reg, NULL);
  assert_int_equal(lists, 1);
  assert_line(text, "# TYPE brume_placement_host_memory_bytes gauge");
  assert_line(text, "brume_placement_host_memory_bytes{host=\"w1\"} 4294967296");
  assert_line(text, "brume_placement_host_free_memory_bytes{host=\"w1\"} 4026531840");
  assert_line(text, "brume_placement_host_reserved_memory_bytes{host=\"w1\"} 134217728");
  assert_line(text, "brume_placement_host_available_memory_bytes{host=\"w1\"} 21088960512");
  assert_line(text, "brume_placement_host_vcpus{host=\"w1\"} 8");
  assert_line(text, "brume_placement_host_vcpu_committed{host=\"w1\"} 2.5");
  assert_line(text, "brume_placement_host_sandboxes{host=\"w1\",state=\"idle\"} 3");
  assert_line(text, "brume_placement_host_sandboxes{host=\"w1\",state=\"invoking\"} 1");
  assert_line(text, "brume_placement_host_pool_ready{host=\"w1\"} 2");
  assert_line(text, "brume_placement_host_draining{host=\"w1\"} 1");
  assert_line(text, "brume_placement_host_info{host=\"w1\",accelerator=\"kvm\"} 1");
  assert_line(text, "brume_placement_host_memory_bytes{host=\"w2\"} 1073741824");
  assert_line(text, "brume_placement_host_vcpu_committed{host=\"w2\"} 0.144");
  assert_line(text, "brume_placement_host_sandboxes{host=\"w2\",state=\"idle\"} 0");
  assert_line(text, "brume_placement_host_draining{host=\"w2\"} 0");
  assert_line(text, "brume_placement_host_info{host=\"w2\",accelerator=\"tcg\"} 1");
  assert_line(text, "brume_placement_host_info{host=\"w3\",accelerator=\"unknown\"} 1");
  free(text);

  /* w2 and w3 left: gone from every gauge at the next render, w1 still there. */
  n_hosts = 1;
  text = brume_metrics_render(reg, NULL);
  assert_int_equal(lists, 2);
  assert_null(strstr(text, "host=\"w2\""));
  assert_null(strstr(text, "host=\"w3\""));
  assert_line(text, "brume_placement_host_pool_ready{host=\"w1\"} 2");
  free(text);

  /* Stopped: no more calls, no series left. */
  brume_host_metrics_stop(m);
  text = brume_metrics_render(reg, NULL);
  assert_int_equal(lists, 2);
  assert_null(strstr(text, "host=\""));
  free(text);
  brume_metrics_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hosts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
