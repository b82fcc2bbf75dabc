/*
 * metrics — Prometheus text exposition (format 0.0.4) over plain HTTP.
 *
 * GET or HEAD /metrics (HTTP/1.0 or 1.1) is answered with the metrics and the
 * connection closed; other paths get 404, other methods 405. Served on the
 * main thread's loop through ctl_srv, with its bounds: an 8 KiB request, 5 s
 * per client, 16 clients at once.
 *
 * Every name starts with tandem_. Labels: frontend= (and backend=, the pool
 * it feeds) on frontend metrics, backend= and server= on server metrics.
 * Counters end in _total, times are in seconds, sizes in bytes.
 *
 *   tandem_build_info{version,node}            gauge, always 1
 *   tandem_uptime_seconds                      gauge
 *   tandem_workers                             gauge
 *   tandem_frontend_connections_active         gauge
 *   tandem_frontend_connections_total          counter, accepted
 *   tandem_frontend_bytes_received_total       counter, from clients
 *   tandem_frontend_bytes_sent_total           counter, to clients
 *   tandem_frontend_connect_errors_total       counter, failed backend connects
 *   tandem_frontend_retries_total              counter
 *   tandem_frontend_no_server_total            counter, clients closed: no server
 *   tandem_frontend_timeouts_total             counter
 *   tandem_frontend_resets_total               counter
 *   tandem_frontend_limit_pauses_total         counter, max-connections reached
 *   tandem_frontend_accept_errors_total        counter, EMFILE & co.
 *   tandem_server_connections_active           gauge
 *   tandem_server_connections_total            counter
 *   tandem_server_bytes_received_total         counter, from the server
 *   tandem_server_bytes_sent_total             counter, to the server
 *   tandem_server_connect_errors_total         counter
 *   tandem_server_retries_total                counter
 *   tandem_server_state_changes_total          counter
 *   tandem_server_state{state="up|down|drain|maint"}  gauge, 1 for the current
 *                                              state, 0 for the others (a state set)
 *   tandem_server_weight                       gauge, configured
 *   tandem_server_effective_weight             gauge, after slow start
 *   tandem_server_connect_time_ewma_seconds    gauge, absent until a sample
 *   tandem_server_healthy                      gauge 1/0, the health verdict
 *   tandem_server_slow_start                   gauge 1/0, weight still ramping
 *   tandem_server_checks_total{result="ok|failed"}  counter, active checks
 *   tandem_server_check_success                gauge 1/0, the last check
 *   tandem_server_check_duration_seconds       gauge, the last check
 * The health series exist only for backends with a health module, the last
 * two only once a check has completed.
 *
 * With vrrp-groups (labels group=, vrid=):
 *   tandem_vrrp_state{state="INIT|BACKUP|MASTER|FAULT"}  gauge, a state set
 *   tandem_vrrp_priority, tandem_vrrp_base_priority      gauge
 *   tandem_vrrp_faults, tandem_vrrp_priority_decrement  gauge, from tracking
 *   tandem_vrrp_vips_up                                 gauge 1/0
 *   tandem_vrrp_peer_config_mismatch                    gauge 1/0
 *   tandem_vrrp_transitions_total                       counter
 *   tandem_vrrp_adverts_sent_total, _advert_send_errors_total  counter
 *   tandem_vrrp_adverts_received_total, _adverts_ignored_total counter
 *   tandem_vrrp_stalls_total                            counter, late wake-ups
 *   tandem_vrrp_garps_sent_total, tandem_vrrp_nas_sent_total   counter
 *   tandem_vrrp_vip_readds_total, _vip_stale_removed_total,
 *   tandem_vrrp_vip_netlink_errors_total                counter
 *   tandem_vrrp_advert_age_seconds                      gauge, absent: no master
 *   tandem_vrrp_vip_add_latency_seconds, _vip_remove_latency_seconds  gauge, last
 *   tandem_vrrp_takeover_seconds                        gauge, last MASTER entry
 *                                                       to VIPs up
 *   tandem_vrrp_since_transition_seconds                gauge
 * and node-wide: tandem_vrrp_adverts_accepted_total,
 * tandem_vrrp_adverts_dropped_total{reason=}, tandem_vrrp_boot_epoch,
 * tandem_vrrp_notify_{runs,failed,killed,dropped}_total,
 * tandem_vrrp_script_{runs,killed}_total.
 */
#ifndef TANDEM_METRICS_H
#define TANDEM_METRICS_H

#include <sys/socket.h>

#include <tandem/ctl.h>

struct ev_loop;
struct metrics;

#define METRICS_MAX_REQUEST 8192
#define METRICS_MAX_CLIENTS 16

/*
 * Listen on addr (TCP for AF_INET/AF_INET6; AF_UNIX works too and is what the
 * unit tests use) and serve on loop, the main thread's. view is copied; its
 * pointers are borrowed (see struct ctl_view). An AF_UNIX path must not
 * exist yet and is left behind by metrics_free (the caller removes it).
 * Returns NULL with errno set, after logging why.
 */
struct metrics *metrics_new(struct ev_loop *loop, const struct sockaddr *addr,
    socklen_t len, const struct ctl_view *view);

/* Close the listener and every client, free. NULL is a no-op. */
void metrics_free(struct metrics *m);

/* Show a new view from now on (reload). view is copied. */
void metrics_set_view(struct metrics *m, const struct ctl_view *view);

/*
 * Append the exposition text for view at time now (ev_now of the main loop)
 * to out. Returns 0 or -ENOMEM.
 */
int metrics_render(const struct ctl_view *view, double now, struct ctl_buf *out);

#endif
