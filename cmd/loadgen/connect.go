package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// perSourceAddr is how many connections share one source address: Linux
// picks a bound socket's port from about 28,000 ephemeral ports per local
// address, so the devices spread over 127.0.0.0/8.
const perSourceAddr = 20000

// runConnect registers devices, connects each over MQTT with a SAS token
// from its own raw client (no client library, so the generator's cost per
// device stays small), keeps them idle with keep-alive pings, and reports
// the connect rate and the emulator's memory per connected device.
func runConnect(ctx context.Context, args []string, fdLimit uint64) error {
	fs := flag.NewFlagSet("connect", flag.ExitOnError)
	var ef emulatorFlags
	ef.register(fs)
	fs.BoolVar(&ef.tls, "tls", false, "connect over MQTT with TLS (8883-style listener) instead of plain MQTT")
	devices := fs.Int("devices", 10_000, "devices to connect")
	parallel := fs.Int("parallel", 64, "connection attempts in flight at once")
	keepAlive := fs.Duration("keepalive", 4*time.Minute, "MQTT keep-alive the devices announce (they ping at half of it)")
	hold := fs.Duration("hold", 30*time.Second, "how long the devices stay connected and idle after the last CONNACK")
	_ = fs.Parse(args)
	if need := uint64(*devices) + 64; fdLimit < need {
		fmt.Printf("note: this process may open %d files (the hard limit); %d devices need about %d\n", fdLimit, *devices, need)
	}

	tmp, err := os.MkdirTemp("", "iothub-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e, err := newEmulator(ctx, ef, tmp)
	if err != nil {
		return err
	}
	defer e.kill()
	if _, err := e.start(); err != nil {
		return err
	}
	have, err := deviceCount(ctx, e)
	if err != nil {
		return err
	}
	if have < *devices {
		if err := bulkImport(ctx, e, have, *devices, 4, false, false); err != nil {
			return err
		}
	}
	var tlsConf *tls.Config
	if ef.tls {
		ca, err := os.ReadFile(filepath.Join(e.dataDir, "certs", "ca.pem"))
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tlsConf = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	}
	// Let the emulator settle after the import before the baseline.
	time.Sleep(3 * time.Second)
	before := e.rssKB()
	fmt.Printf("emulator pid %d, RSS before connecting %d MB; connecting %d devices over %s\n",
		e.cmd.Process.Pid, before/1024, *devices, map[bool]string{false: "MQTT", true: "MQTT over TLS"}[ef.tls])

	var (
		connected, failed, dropped atomic.Int64
		firstErr                   atomic.Value
		wg                         sync.WaitGroup
		conns                      = make([]net.Conn, *devices)
	)
	holdCtx, stopHold := context.WithCancel(ctx)
	defer stopHold()
	idx := make(chan int)
	begin := time.Now()
	emuCPU := cpuTime(e.cmd.Process.Pid)
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				c, err := dialDevice(e.mqttAddr, i, tlsConf, *keepAlive)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns[i] = c
				connected.Add(1)
				go idle(holdCtx, c, *keepAlive, &dropped)
			}
		}()
	}
	ticker := time.NewTicker(5 * time.Second)
	go func() {
		for range ticker.C {
			n := connected.Load()
			fmt.Printf("  %d connected, %d failed, %.0f/s, emulator RSS %d MB\n", n, failed.Load(), float64(n)/time.Since(begin).Seconds(), e.rssKB()/1024)
		}
	}()
feed:
	for i := range *devices {
		select {
		case idx <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idx)
	wg.Wait()
	ticker.Stop()
	took := time.Since(begin)
	emuCPU = cpuTime(e.cmd.Process.Pid) - emuCPU
	n := connected.Load()
	fmt.Printf("connected %d devices in %s: %.0f connects/s; %d failed", n, took.Round(time.Millisecond), float64(n)/took.Seconds(), failed.Load())
	if err, ok := firstErr.Load().(error); ok {
		fmt.Printf(" (first error: %v)", err)
	}
	fmt.Println()
	if n > 0 {
		fmt.Printf("emulator CPU while connecting: %s (%.0f µs per connect)\n", emuCPU.Round(10*time.Millisecond), float64(emuCPU.Microseconds())/float64(n))
	}
	if n == 0 {
		return errors.New("no device connected")
	}
	settle := min(*hold, 5*time.Second)
	select {
	case <-time.After(settle):
	case <-ctx.Done():
	}
	after := e.rssKB()
	fmt.Printf("emulator RSS with %d idle devices: %d MB (was %d MB): %.1f KB per device\n", n, after/1024, before/1024, float64(after-before)/float64(n))
	select {
	case <-time.After(*hold - settle):
	case <-ctx.Done():
	}
	end := e.rssKB()
	fmt.Printf("after holding %s: RSS %d MB (%.1f KB per device), %d connections closed by the emulator, threads %d\n", *hold, end/1024,
		float64(end-before)/float64(n), dropped.Load(), procStatusKB(e.cmd.Process.Pid, "Threads:"))
	stopHold()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return e.stop()
}

// dialDevice connects device i from a source address of its own group and
// waits for a successful CONNACK.
func dialDevice(addr string, i int, tlsConf *tls.Config, keepAlive time.Duration) (net.Conn, error) {
	src := net.IPv4(127, 1, byte(i/perSourceAddr/256), byte(1+i/perSourceAddr%255))
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(&d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	id := devID(i)
	tok, err := sasauth.Sign("localhost/devices/"+id, deviceKey, "", time.Now().Add(48*time.Hour))
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(connectPacket(id, "localhost/"+id+"/?api-version=2021-04-12", tok, keepAlive)); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: CONNACK: %w", id, err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("%s: CONNACK % x", id, ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session, user name
// and password.
func connectPacket(clientID, user, pass string, keepAlive time.Duration) []byte {
	var body []byte
	str := func(s string) {
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	str("MQTT")
	body = append(body, 4, 0x80|0x40|0x02)
	body = binary.BigEndian.AppendUint16(body, uint16(keepAlive/time.Second))
	str(clientID)
	str(user)
	str(pass)
	out := []byte{0x10}
	for n := len(body); ; {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// idle keeps one connection alive: a PINGREQ every half keep-alive, and
// reads whatever comes (PINGRESP). A connection the emulator closes counts
// as dropped.
func idle(ctx context.Context, c net.Conn, keepAlive time.Duration, dropped *atomic.Int64) {
	r := bufio.NewReaderSize(c, 16)
	buf := make([]byte, 16)
	for {
		_ = c.SetReadDeadline(time.Now().Add(keepAlive / 2))
		_, err := r.Read(buf)
		if ctx.Err() != nil {
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte{0xC0, 0}); err != nil {
				dropped.Add(1)
				return
			}
			continue
		}
		if err != nil {
			dropped.Add(1)
			return
		}
	}
}
