[ -d /var/lib/tether-agent ] || install -d -m 0700 /var/lib/tether-agent
# The agent's own log directory (root only): older packages shared it with
# the coordinator's user (root:tether 0770).
install -d -m 0700 -o root -g root /var/log/tether
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable tether-agent.service >/dev/null 2>&1 || :
    if [ -s /var/lib/tether-agent/registration.json ]; then systemctl restart tether-agent.service || :; fi
else
    command -v chkconfig >/dev/null 2>&1 && chkconfig --add tether-agent || :
    if [ -s /var/lib/tether-agent/registration.json ]; then /etc/init.d/tether-agent restart || :; fi
fi
