#!/bin/sh
# Runs inside the scripts/ipvs-vm guest (busybox sh), from the share that also
# holds the static probe genl-family. Programs IPVS with ipvsadm, checks
# `ipvsadm -Ln`, sets and reads back the IPVS sysctls, deletes everything.
# Every address is in 127.0.0.0/8: nothing here sends a packet anywhere.
# Prints PASS or FAIL lines and exits with the number of failures.
cd "$(dirname "$0")" || exit 1
fails=0
pass() { echo "selftest: PASS: $*"; }
fail() { echo "selftest: FAIL: $*"; fails=$((fails + 1)); }
check() { # description, command...
  d=$1; shift
  if out=$("$@" 2>&1); then pass "$d"; else fail "$d: $out"; fi
}
expect() { # description, pattern (grep -E, one line) in $listing
  if echo "$listing" | grep -Eq "$2"; then pass "$1"; else fail "$1: /$2/ not in listing"; fi
}

echo "selftest: kernel $(uname -r)"
check "ip_vs loaded" grep -q '^ip_vs ' /proc/modules
check "static generic-netlink probe resolves IPVS" ./genl-family IPVS
./genl-family IPVS 2>&1 | sed 's/^/selftest:   /'

check "add TCP service 127.0.0.100:80 rr" ipvsadm -A -t 127.0.0.100:80 -s rr
check "add real 127.0.0.11:8080 (masq, w1)" ipvsadm -a -t 127.0.0.100:80 -r 127.0.0.11:8080 -m -w 1
check "add real 127.0.0.12:8080 (masq, w2)" ipvsadm -a -t 127.0.0.100:80 -r 127.0.0.12:8080 -m -w 2
check "add UDP service 127.0.0.100:53 wrr" ipvsadm -A -u 127.0.0.100:53 -s wrr
check "add real 127.0.0.11:5353 to UDP" ipvsadm -a -u 127.0.0.100:53 -r 127.0.0.11:5353 -m -w 3
check "add fwmark 7 service sh" ipvsadm -A -f 7 -s sh
check "add real 127.0.0.13 to fwmark 7" ipvsadm -a -f 7 -r 127.0.0.13:0 -m
for s in lc mh; do
  check "scheduler $s accepted" ipvsadm -E -f 7 -s "$s"
done
check "per-service timeouts (tcp 7200 tcpfin 120 udp 300)" ipvsadm --set 7200 120 300

listing=$(ipvsadm -Ln 2>&1)
echo "$listing" | sed 's/^/selftest:   /'
expect "listing: TCP service rr" '^TCP +127\.0\.0\.100:80 rr'
expect "listing: real 127.0.0.11:8080 Masq 1" '^ +-> 127\.0\.0\.11:8080 +Masq +1 '
expect "listing: real 127.0.0.12:8080 Masq 2" '^ +-> 127\.0\.0\.12:8080 +Masq +2 '
expect "listing: UDP service wrr" '^UDP +127\.0\.0\.100:53 wrr'
expect "listing: UDP real weight 3" '^ +-> 127\.0\.0\.11:5353 +Masq +3 '
expect "listing: FWM 7 service (mh last set)" '^FWM +7 mh'
n=$(echo "$listing" | grep -Ec '^(TCP|UDP|FWM) ')
[ "$n" = 3 ] && pass "listing: exactly 3 services" || fail "listing: $n services, want 3"
timeouts=$(ipvsadm -L --timeout 2>&1)
echo "$timeouts" | grep -Eq 'Timeout \(tcp tcpfin udp\): 7200 120 300' && pass "timeouts read back" || fail "timeouts: $timeouts"

# The sysctls Swarm sets (moby#35082/#31746, #33790).
for kv in conn_reuse_mode=0 expire_nodest_conn=1 expire_quiescent_template=1; do
  k=${kv%=*}; v=${kv#*=}
  check "sysctl -w net.ipv4.vs.$k=$v" sysctl -w "net.ipv4.vs.$k=$v"
  got=$(cat "/proc/sys/net/ipv4/vs/$k" 2>&1)
  [ "$got" = "$v" ] && pass "read back net.ipv4.vs.$k = $got" || fail "net.ipv4.vs.$k is '$got', want $v"
done

check "weight 0 for a removed backend" ipvsadm -e -t 127.0.0.100:80 -r 127.0.0.12:8080 -m -w 0
ipvsadm -Ln | grep -Eq '127\.0\.0\.12:8080 +Masq +0 ' && pass "weight 0 listed" || fail "weight 0 not listed"
check "delete real 127.0.0.12:8080" ipvsadm -d -t 127.0.0.100:80 -r 127.0.0.12:8080
ipvsadm -Ln | grep -q '127\.0\.0\.12:8080' && fail "deleted real still listed" || pass "deleted real gone"
check "delete TCP service" ipvsadm -D -t 127.0.0.100:80
check "delete UDP service" ipvsadm -D -u 127.0.0.100:53
check "clear (fwmark service)" ipvsadm -C
n=$(ipvsadm -Ln | grep -Ec '^(TCP|UDP|FWM) ')
[ "$n" = 0 ] && pass "no service left" || fail "$n services left after clear"

if [ "$fails" = 0 ]; then echo "selftest: ALL PASS"; else echo "selftest: $fails FAILED"; fi
exit "$fails"
