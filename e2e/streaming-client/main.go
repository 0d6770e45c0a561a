// streaming-client drives corral's streaming server with the real Kubernetes client code
// (k8s.io/client-go), exactly as crictl v1.37 does: remotecommand.NewSPDYExecutor (POST) or
// NewWebSocketExecutor (GET) for exec/attach, and the SPDY or SPDY-over-WebSocket dialer
// with portforward.NewOnAddressesForStreaming for port-forward.
//
// Usage:
//
//	streaming-client exec -transport spdy|websocket -url URL [-stdin] [-tty]
//	    stdout/stderr are copied to ours; with -stdin our stdin is sent. With -tty, a
//	    stdin line "#resize WxH" becomes a terminal resize instead of input. Exits with the
//	    remote exit code (prints "exit-code: N" to stderr), 0 on success, 125 on any
//	    other error (printed as "error: ..."). -protocols offers only the given subprotocols;
//	    -timing prints the session's wall time (connect to exit status) as "elapsed-us: N".
//	streaming-client portforward -transport spdy|websocket -url URL -ports P1,P2
//	    forwards 127.0.0.1:<free port> to each remote port, prints "ready L1 L2" once
//	    listening, and stops when its stdin reaches EOF.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: streaming-client exec|portforward ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "exec":
		err = runExec(os.Args[2:])
	case "portforward":
		err = runPortForward(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	var exitErr exec.CodeExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exitErr):
		fmt.Fprintf(os.Stderr, "exit-code: %d\n", exitErr.Code)
		os.Exit(exitErr.Code)
	default:
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(125)
	}
}

// sizeQueue feeds terminal sizes parsed from "#resize WxH" stdin lines.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	size, ok := <-q
	if !ok {
		return nil
	}
	return &size
}

// resizeFilter passes stdin through, turning "#resize WxH" lines into resize events.
func resizeFilter(in io.Reader, sizes sizeQueue) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		defer close(sizes)
		r := bufio.NewReader(in)
		for {
			line, err := r.ReadString('\n')
			var w, h uint16
			if n, _ := fmt.Sscanf(line, "#resize %dx%d", &w, &h); n == 2 {
				sizes <- remotecommand.TerminalSize{Width: w, Height: h}
			} else if len(line) > 0 {
				if _, werr := pw.Write([]byte(line)); werr != nil {
					return
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

func runExec(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	transport := fs.String("transport", "spdy", "spdy or websocket")
	rawURL := fs.String("url", "", "exec/attach URL")
	stdin := fs.Bool("stdin", false, "send our stdin")
	tty := fs.Bool("tty", false, "terminal mode")
	protocols := fs.String("protocols", "", "comma-separated subprotocols to offer (default: client-go's)")
	timing := fs.Bool("timing", false, "print the session's wall time as \"elapsed-us: N\" on stderr")
	_ = fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil {
		return err
	}
	config := &rest.Config{}
	var executor remotecommand.Executor
	switch {
	case *transport == "spdy" && *protocols == "":
		executor, err = remotecommand.NewSPDYExecutor(config, "POST", u)
	case *transport == "spdy":
		tr, upgrader, terr := spdy.RoundTripperFor(config)
		if terr != nil {
			return terr
		}
		executor, err = remotecommand.NewSPDYExecutorForProtocols(tr, upgrader, "POST", u, strings.Split(*protocols, ",")...)
	case *transport == "websocket" && *protocols == "":
		executor, err = remotecommand.NewWebSocketExecutor(config, "GET", u.String())
	case *transport == "websocket":
		executor, err = remotecommand.NewWebSocketExecutorForProtocols(config, "GET", u.String(), strings.Split(*protocols, ",")...)
	default:
		err = fmt.Errorf("unknown transport %q", *transport)
	}
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Stdout: os.Stdout, Tty: *tty}
	if !*tty {
		opts.Stderr = os.Stderr
	}
	if *stdin {
		opts.Stdin = os.Stdin
		if *tty {
			sizes := make(sizeQueue, 16)
			opts.Stdin = resizeFilter(os.Stdin, sizes)
			opts.TerminalSizeQueue = sizes
		}
	}
	start := time.Now()
	err = executor.StreamWithContext(context.Background(), opts)
	if *timing {
		fmt.Fprintf(os.Stderr, "elapsed-us: %d\n", time.Since(start).Microseconds())
	}
	return err
}

func runPortForward(args []string) error {
	fs := flag.NewFlagSet("portforward", flag.ExitOnError)
	transport := fs.String("transport", "spdy", "spdy or websocket")
	rawURL := fs.String("url", "", "port-forward URL")
	ports := fs.String("ports", "", "comma-separated remote ports")
	_ = fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil {
		return err
	}
	config := &rest.Config{}
	var dialer streamhttp.Dialer
	switch *transport {
	case "spdy":
		tr, upgrader, err := spdy.RoundTripperFor(config)
		if err != nil {
			return err
		}
		dialer = spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: tr}, "POST", u)
	case "websocket":
		dialer, err = portforward.NewSPDYOverWebsocketDialerForStreaming(u, config)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown transport %q", *transport)
	}
	var specs []string
	for _, p := range strings.Split(*ports, ",") {
		specs = append(specs, "0:"+p)
	}
	stop := make(chan struct{})
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesForStreaming(dialer, []string{"127.0.0.1"}, specs, stop, ready, os.Stderr, os.Stderr)
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	go func() {
		<-ready
		got, err := fw.GetPorts()
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			os.Exit(125)
		}
		locals := make([]string, len(got))
		for i, p := range got {
			locals[i] = fmt.Sprint(p.Local)
		}
		fmt.Printf("ready %s\n", strings.Join(locals, " "))
	}()
	return fw.ForwardPorts()
}
