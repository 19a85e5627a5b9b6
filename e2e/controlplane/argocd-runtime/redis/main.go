// Command argocd-redis serves the Redis protocol from memory (miniredis) on a loopback
// address, for Argo CD's application controller and repo-server in the e2e harness.
//
// Why miniredis rather than Debian's redis-server: it is already in Argo CD's module
// graph (Argo CD's own core mode and tests cache in it), so it builds from the same
// pins with the same Go toolchain, needs no apt package in CI, and cannot collide
// with a system instance the package's postinst would start on 6379.
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "address to listen on")
	flag.Parse()
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(*addr); err != nil {
		log.Fatalf("listening on %s: %v", *addr, err)
	}
	// miniredis lets no time pass on its own (TTLs only shrink through FastForward),
	// while Argo CD relies on expiry, e.g. the repo-server's cache of a repository's
	// refs and its revision locks. Advance its clock in real time.
	go func() {
		last := time.Now()
		for now := range time.Tick(250 * time.Millisecond) {
			m.FastForward(now.Sub(last))
			last = now
		}
	}()
	log.Printf("argocd-redis listening on %s", m.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	m.Close()
}
