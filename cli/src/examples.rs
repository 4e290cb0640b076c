//! The examples the long help (`--help`) and the man pages show for the main commands, kept
//! together and added to the command tree clap derives (`main::command`).

/// (command path, examples): each line a command and what it does.
const EXAMPLES: &[(&[&str], &str)] = &[
    (
        &["build"],
        "  berth build -t app:1.0 .                          # the Dockerfile in ., tagged app:1.0
  berth build -f ci/Dockerfile --target test .      # another Dockerfile, up to stage `test`
  berth build --build-arg VERSION=2 --no-cache .    # a build arg; every step run again
  berth build -t registry.example:5000/app:1 --push .
  berth build --cache-from type=registry,ref=reg:5000/app:cache \\
      --cache-to type=registry,ref=reg:5000/app:cache,mode=max -t app .
  berth build --secret id=npm,src=$HOME/.npmrc --ssh default .
  berth build -o type=local,dest=out .              # the result's files, not an image
  berth build -f - . < Dockerfile                   # the Dockerfile from stdin",
    ),
    (
        &["run"],
        "  berth run --rm busybox echo hello               # run, print, remove the container
  berth run -it --rm busybox sh                     # an interactive shell
  berth run -d --name web -v data:/srv busybox httpd -f -h /srv
  berth run --rm -e MODE=test -w /app -u 1000 app:1.0 ./test.sh
  berth run --rm --network host --memory 256m --cpus 0.5 app:1.0",
    ),
    (
        &["pull"],
        "  berth pull busybox                              # docker.io/library/busybox:latest
  berth pull registry.example:5000/team/app:1.0
  berth pull --platform linux/arm64 alpine@sha256:…",
    ),
    (
        &["push"],
        "  berth push registry.example:5000/app:1.0        # a store image under that name
  berth push app:1.0 registry.example:5000/app:1.0  # under another name
  berth push --compression zstd --digestfile d.txt registry.example:5000/app:1.0",
    ),
    (
        &["images"],
        "  berth images                                    # every image, newest first
  berth images app                                  # only the repository app
  berth images -q                                   # image IDs only
  berth images --format json",
    ),
    (
        &["ps"],
        "  berth ps                                        # running containers
  berth ps -a                                       # and the stopped ones
  berth ps -aq                                      # their IDs only",
    ),
    (
        &["inspect"],
        "  berth inspect busybox                           # a JSON array, as docker inspect
  berth inspect app:1.0 | jq '.[0].Config.Env'",
    ),
    (
        &["copy"],
        "  berth copy docker://reg:5000/app:1 oci:./layout:app   # a registry image into an OCI layout
  berth copy oci-archive:app.tar docker://reg:5000/app:1
  berth copy --all docker://reg:5000/app:1 docker://mirror:5000/app:1
  berth copy app:1.0 docker-archive:app.tar",
    ),
    (
        &["login"],
        "  berth login -u ci registry.example:5000         # asks for the password on a terminal
  echo \"$TOKEN\" | berth login -u ci --password-stdin registry.example:5000",
    ),
    (
        &["system", "prune"],
        "  berth system prune                              # unnamed images and unused content
  berth system prune -a -f                          # every image no container uses; no question
  berth system prune --build-cache --filter until=24h",
    ),
];

/// `cmd` with the examples added to the long help of the commands they are for.
pub fn add(mut cmd: clap::Command) -> clap::Command {
    for (path, lines) in EXAMPLES {
        let text = format!("Examples:\n{lines}");
        cmd = with_sub(cmd, path, text);
    }
    cmd
}

fn with_sub(cmd: clap::Command, path: &[&str], text: String) -> clap::Command {
    match path {
        [] => cmd.after_long_help(text),
        [first, rest @ ..] => {
            let rest = rest.to_vec();
            cmd.mut_subcommand(*first, move |sub| with_sub(sub, &rest, text))
        }
    }
}
