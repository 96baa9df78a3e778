# Packer's shutdown command: the last thing that runs in the build VM.
#
# The build needed WinRM with Basic auth over unencrypted HTTP (on the host's
# internal switch only) and remote admin tokens for local accounts. Changing
# the live WinRM configuration here would cut Packer's own session, so the
# settings are switched off by policy instead, which wins over the local
# configuration from the next boot on: every pool VM starts with WinRM
# encrypted-only and without Basic auth.

$ErrorActionPreference = 'Continue'

$winrmPolicy = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WinRM\Service'
New-Item -Path $winrmPolicy -Force | Out-Null
New-ItemProperty -Path $winrmPolicy -Name 'AllowBasic' -Value 0 -PropertyType DWord -Force | Out-Null
New-ItemProperty -Path $winrmPolicy -Name 'AllowUnencryptedTraffic' -Value 0 -PropertyType DWord -Force | Out-Null

Remove-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' `
    -Name 'LocalAccountTokenFilterPolicy' -ErrorAction SilentlyContinue

Remove-Item -Force -Path $PSCommandPath
& shutdown.exe /s /t 5 /f /d p:4:1 /c 'hvkube template build finished'
