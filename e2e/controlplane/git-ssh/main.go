// git-ssh: a git host over SSH for Berth's e2e suites (e2e/src/ssh_remote.rs).
// It serves the bare repositories under -root to `git upload-pack` and
// `git receive-pack` over SSH, accepting the public keys in -authorized-keys,
// which it reads again at every login, so a test can rotate the key the host
// accepts as a git host's owner would. It prints its port on stdout once it
// listens. Built by e2e/controlplane/build-git-ssh.sh.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	hostKey := flag.String("host-key", "", "the host's private key (PEM or OpenSSH)")
	authorized := flag.String("authorized-keys", "", "authorized_keys file, read at every login")
	root := flag.String("root", "", "folder of the bare repositories served")
	flag.Parse()

	pem, err := os.ReadFile(*hostKey)
	if err != nil {
		log.Fatalf("host key: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		log.Fatalf("host key: %v", err)
	}
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if accepted(*authorized, key) {
				return nil, nil
			}
			log.Printf("refused key %s for %s", ssh.FingerprintSHA256(key), meta.User())
			return nil, fmt.Errorf("key not authorized")
		},
	}
	config.AddHostKey(signer)

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Fatalf("accept: %v", err)
		}
		go serve(conn, config, *root)
	}
}

// accepted says whether key is one of the keys in the authorized_keys file now.
func accepted(path string, key ssh.PublicKey) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for len(data) > 0 {
		known, _, _, rest, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			return false
		}
		if bytes.Equal(known.Marshal(), key.Marshal()) {
			return true
		}
		data = rest
	}
	return false
}

func serve(conn net.Conn, config *ssh.ServerConfig, root string) {
	defer conn.Close()
	_, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		log.Printf("handshake: %v", err)
		return
	}
	go ssh.DiscardRequests(requests)
	for newChannel := range channels {
		if newChannel.ChannelType() != "session" {
			newChannel.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		channel, requests, err := newChannel.Accept()
		if err != nil {
			continue
		}
		go session(channel, requests, root)
	}
}

// session runs the one git command an exec request asks for.
func session(channel ssh.Channel, requests <-chan *ssh.Request, root string) {
	defer channel.Close()
	for request := range requests {
		if request.Type != "exec" {
			request.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(request.Payload, &payload); err != nil {
			request.Reply(false, nil)
			return
		}
		service, repo, ok := strings.Cut(payload.Command, " ")
		if !ok || (service != "git-upload-pack" && service != "git-receive-pack") {
			request.Reply(false, nil)
			return
		}
		repo = strings.Trim(repo, "'\"")
		path := filepath.Join(root, filepath.Clean("/"+repo))
		request.Reply(true, nil)
		cmd := exec.Command("git", strings.TrimPrefix(service, "git-"), path)
		cmd.Stdout, cmd.Stderr = channel, channel.Stderr()
		// A pipe of our own: Wait must not wait on a client that sends nothing more.
		stdin, err := cmd.StdinPipe()
		status := uint32(1)
		if err == nil && cmd.Start() == nil {
			go func() { io.Copy(stdin, channel); stdin.Close() }()
			if err := cmd.Wait(); err != nil {
				log.Printf("%s %s: %v", service, path, err)
			} else {
				status = 0
			}
		}
		channel.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}
