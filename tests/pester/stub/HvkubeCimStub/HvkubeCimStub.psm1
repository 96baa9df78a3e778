# A stand-in for the CIM cmdlets the dispatcher calls (Get-CimInstance, Get-CimAssociatedInstance,
# Invoke-CimMethod), answering for the WMI classes of root\virtualization\v2 it uses: a VM's
# Msvm_ComputerSystem, its keyboard, mouse, video head, KVP exchange component and settings, the
# management service (thumbnails) and jobs; and Win32_OperatingSystem for host_info.
#
# Imported into the global scope by the Hyper-V stand-in (..\Hyper-V\Hyper-V.psm1), so that the
# dispatcher's unqualified calls find these functions before the real cmdlets. Pester's Mock cannot
# reach the dispatcher: it runs in a child process.
#
# The VMs are the Hyper-V stand-in's (read through Hyper-V\Get-VM, so a VM's devices follow its
# current state: a VM's keyboard, mouse, video head and KVP component exist only while it runs).
# Per-VM WMI data (KVP items, screen size, whether methods answer with a job) come from the same
# seed file ($env:HVKUBE_STUB_HOST, a VM's "Wmi" object). Every Invoke-CimMethod call is logged to
# $env:HVKUBE_STUB_LOG with each argument's value, .NET type and (for text) base64 form, so that
# the tests can read the text typed without PowerShell 7's ConvertFrom-Json turning a date-like
# text into a DateTime on the way back.
#
# Not modelled: WMI's own errors (a bad namespace, class or filter is a terminating error here),
# real job progress (a job is complete as soon as it is made), method return codes other than 0
# and 4096 (and 32775 for a thumbnail of a VM that does not run).
#
# Windows PowerShell 5.1 must load this file: no PowerShell 7 syntax, ASCII only.

Set-StrictMode -Version 2.0

$script:Utf8 = New-Object System.Text.UTF8Encoding $false
$script:LogPath = $env:HVKUBE_STUB_LOG
$script:Namespace = 'root/virtualization/v2'
$script:ComputerName = 'STUBHOST'
$script:FreePhysicalMemoryKB = [uint64]16777216
$script:Wmi = @{}   # VM id (lower-case guid text) -> the seed's Wmi object
$script:Jobs = @{}  # job InstanceID -> Msvm_ConcreteJob properties

function Get-CimSeedValue {
    param($Object, [string]$Name, $Default)
    if ($null -eq $Object) { return $Default }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property -or $null -eq $property.Value) { return $Default }
    return $property.Value
}

function Import-CimStubHost {
    param([string]$Path)
    if ([string]::IsNullOrEmpty($Path)) { return }
    $seed = Get-Content -LiteralPath $Path -Raw -Encoding UTF8 | ConvertFrom-Json
    $hostSeed = Get-CimSeedValue $seed 'Host' $null
    $script:FreePhysicalMemoryKB = [uint64](Get-CimSeedValue $hostSeed 'FreePhysicalMemoryKB' $script:FreePhysicalMemoryKB)
    foreach ($vm in @(Get-CimSeedValue $seed 'VMs' @())) {
        $id = Get-CimSeedValue $vm 'Id' $null
        if ($null -ne $id) { $script:Wmi[([guid]$id).ToString()] = Get-CimSeedValue $vm 'Wmi' $null }
    }
}

function New-CimStubInstance {
    # An object shaped like a CimInstance of the class: its type names say the class, and it has
    # the class's properties (the ones the dispatcher reads, and the keys).
    param([string]$ClassName, [string]$Namespace, [System.Collections.IDictionary]$Properties)
    $instance = New-Object psobject -Property $Properties
    $instance.PSObject.TypeNames.Insert(0, 'Microsoft.Management.Infrastructure.CimInstance')
    $instance.PSObject.TypeNames.Insert(0, ('Microsoft.Management.Infrastructure.CimInstance#{0}/{1}' -f $Namespace, $ClassName))
    return $instance
}

function Get-CimStubClass {
    # The class of an instance made by New-CimStubInstance; '' for anything else.
    param($InputObject)
    if ($null -eq $InputObject) { return '' }
    $first = [string]$InputObject.PSObject.TypeNames[0]
    $prefix = 'Microsoft.Management.Infrastructure.CimInstance#'
    if (-not $first.StartsWith($prefix)) { return '' }
    return $first.Substring($first.LastIndexOf('/') + 1)
}

function Get-CimStubFilterValue {
    # The value of "Property='value'", the only filter form the dispatcher writes.
    param([string]$Filter, [string]$Property)
    $pattern = '^\s*' + [regex]::Escape($Property) + '\s*=\s*''([^'']*)''\s*$'
    $match = [regex]::Match([string]$Filter, $pattern, [System.Text.RegularExpressions.RegexOptions]::IgnoreCase)
    if (-not $match.Success) { return $null }
    return $match.Groups[1].Value
}

function Get-CimStubVM {
    # The Hyper-V stand-in's VM with this id (any case), or $null.
    param([string]$Id)
    $guid = [guid]::Empty
    if (-not [guid]::TryParse($Id, [ref]$guid)) { return $null }
    $found = @(Hyper-V\Get-VM -Id $guid -ErrorAction SilentlyContinue)
    if ($found.Count -eq 0) { return $null }
    return $found[0]
}

function Write-CimStubCall {
    param([string]$Command, [System.Collections.IDictionary]$Data)
    if ([string]::IsNullOrEmpty($script:LogPath)) { return }
    $entry = [ordered]@{ cmd = $Command }
    foreach ($key in @($Data.Keys)) { $entry[$key] = $Data[$key] }
    $line = ConvertTo-Json -InputObject $entry -Depth 5 -Compress
    [System.IO.File]::AppendAllText($script:LogPath, $line + "`n", $script:Utf8)
}

function ConvertTo-CimStubArgument {
    # One method argument as logged: its value (an instance by its InstanceID), its .NET type, and
    # for text its base64 form (UTF-8).
    param($Value)
    $logged = [ordered]@{ value = $null; type = ''; base64 = '' }
    if ($null -eq $Value) { return $logged }
    $logged.type = $Value.GetType().FullName
    if ($Value -is [string]) {
        $logged.value = $Value
        $logged.base64 = [Convert]::ToBase64String($script:Utf8.GetBytes($Value))
    } elseif ($Value -is [System.ValueType]) {
        $logged.value = $Value
    } else {
        $instanceId = $Value.PSObject.Properties['InstanceID']
        if ($null -ne $instanceId) { $logged.value = [string]$instanceId.Value } else { $logged.value = [string]$Value }
    }
    return $logged
}

function ConvertTo-CimStubComputerSystem {
    param($VM)
    $enabled = 3
    if ("$($VM.State)" -eq 'Running') { $enabled = 2 }
    return New-CimStubInstance -ClassName 'Msvm_ComputerSystem' -Namespace $script:Namespace -Properties ([ordered]@{
        Caption           = 'Virtual Machine'
        CreationClassName = 'Msvm_ComputerSystem'
        ElementName       = [string]$VM.Name
        EnabledState      = [uint16]$enabled
        Name              = ([guid]$VM.Id).ToString().ToUpperInvariant()
    })
}

function New-CimStubDevice {
    param($VM, [string]$ClassName, [string]$DeviceId, [System.Collections.IDictionary]$Extra)
    $systemName = ([guid]$VM.Id).ToString().ToUpperInvariant()
    $properties = [ordered]@{
        CreationClassName       = $ClassName
        DeviceID                = 'Microsoft:{0}\{1}' -f $systemName, $DeviceId
        ElementName             = $ClassName
        EnabledState            = [uint16]2
        SystemCreationClassName = 'Msvm_ComputerSystem'
        SystemName              = $systemName
    }
    if ($null -ne $Extra) { foreach ($key in @($Extra.Keys)) { $properties[$key] = $Extra[$key] } }
    return New-CimStubInstance -ClassName $ClassName -Namespace $script:Namespace -Properties $properties
}

function New-CimStubKvpItem {
    # One Msvm_KvpExchangeDataItem as the XML text WMI embeds it in.
    param([string]$Name, [string]$Data)
    $format = '<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem">' +
        '<PROPERTY NAME="Data" TYPE="string"><VALUE>{0}</VALUE></PROPERTY>' +
        '<PROPERTY NAME="Name" TYPE="string"><VALUE>{1}</VALUE></PROPERTY>' +
        '<PROPERTY NAME="Source" TYPE="uint16"><VALUE>2</VALUE></PROPERTY></INSTANCE>'
    return ($format -f [System.Security.SecurityElement]::Escape($Data), [System.Security.SecurityElement]::Escape($Name))
}

function Add-CimStubProperty {
    # A note property, which may hold $null (as a CIM result's unset output does).
    param([psobject]$InputObject, [string]$Name, $Value)
    $InputObject.PSObject.Properties.Add((New-Object System.Management.Automation.PSNoteProperty -ArgumentList $Name, $Value))
}

function Get-CimInstance {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, Position = 0)]
        [string]$ClassName,

        [string]$Namespace = 'root/cimv2',

        [string]$Filter
    )
    $namespaceKey = ($Namespace -replace '\\', '/').ToLowerInvariant()
    Write-CimStubCall -Command 'Get-CimInstance' -Data ([ordered]@{ class = $ClassName; namespace = $namespaceKey; filter = $Filter })
    if ($namespaceKey -eq 'root/cimv2' -and $ClassName -eq 'Win32_OperatingSystem') {
        return New-CimStubInstance -ClassName 'Win32_OperatingSystem' -Namespace 'root/cimv2' -Properties ([ordered]@{
            Caption            = 'Microsoft Windows Server 2022 Datacenter'
            CSName             = $script:ComputerName
            FreePhysicalMemory = [uint64]$script:FreePhysicalMemoryKB
            Version            = '10.0.20348'
        })
    }
    if ($namespaceKey -ne $script:Namespace) {
        throw ('HvkubeCimStub: no class {0} in namespace {1}' -f $ClassName, $Namespace)
    }
    switch ($ClassName) {
        'Msvm_ComputerSystem' {
            $vm = Get-CimStubVM -Id (Get-CimStubFilterValue -Filter $Filter -Property 'Name')
            if ($null -ne $vm) { ConvertTo-CimStubComputerSystem $vm }
            return
        }
        'Msvm_VirtualSystemManagementService' {
            return New-CimStubInstance -ClassName $ClassName -Namespace $script:Namespace -Properties ([ordered]@{
                CreationClassName       = $ClassName
                ElementName             = 'Virtual Machine Management Service'
                Name                    = 'vmms'
                SystemCreationClassName = 'Msvm_ComputerSystem'
                SystemName              = $script:ComputerName
            })
        }
        'Msvm_ConcreteJob' {
            $instanceId = Get-CimStubFilterValue -Filter $Filter -Property 'InstanceID'
            if ($null -ne $instanceId -and $script:Jobs.ContainsKey($instanceId)) {
                return New-CimStubInstance -ClassName $ClassName -Namespace $script:Namespace -Properties $script:Jobs[$instanceId]
            }
            return
        }
        default { throw ('HvkubeCimStub: class {0} is not modelled' -f $ClassName) }
    }
}

function Get-CimAssociatedInstance {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, Position = 0)]
        [psobject]$InputObject,

        [string]$ResultClassName,

        [string]$Association
    )
    Write-CimStubCall -Command 'Get-CimAssociatedInstance' -Data ([ordered]@{ class = (Get-CimStubClass $InputObject); result = $ResultClassName })
    if ((Get-CimStubClass $InputObject) -ne 'Msvm_ComputerSystem') { return }
    $vm = Get-CimStubVM -Id $InputObject.Name
    if ($null -eq $vm) { return }
    $key = ([guid]$vm.Id).ToString()
    $wmi = $null
    if ($script:Wmi.ContainsKey($key)) { $wmi = $script:Wmi[$key] }
    $running = "$($vm.State)" -eq 'Running'
    switch ($ResultClassName) {
        'Msvm_VirtualSystemSettingData' {
            # A checkpoint's settings first, then the VM's own ("Realized"): the dispatcher must pick.
            $systemName = ([guid]$vm.Id).ToString().ToUpperInvariant()
            New-CimStubInstance -ClassName $ResultClassName -Namespace $script:Namespace -Properties ([ordered]@{
                ElementName             = 'checkpoint of {0}' -f $vm.Name
                InstanceID              = 'Microsoft:{0}' -f [guid]::NewGuid().ToString().ToUpperInvariant()
                VirtualSystemIdentifier = $systemName
                VirtualSystemType       = 'Microsoft:Hyper-V:Snapshot:Realized'
            })
            New-CimStubInstance -ClassName $ResultClassName -Namespace $script:Namespace -Properties ([ordered]@{
                ElementName             = [string]$vm.Name
                InstanceID              = 'Microsoft:{0}' -f $systemName
                VirtualSystemIdentifier = $systemName
                VirtualSystemType       = 'Microsoft:Hyper-V:System:Realized'
            })
            return
        }
        'Msvm_Keyboard' {
            if ($running) { New-CimStubDevice -VM $vm -ClassName $ResultClassName -DeviceId 'Keyboard' }
            return
        }
        'Msvm_SyntheticMouse' {
            if ($running) { New-CimStubDevice -VM $vm -ClassName $ResultClassName -DeviceId 'SyntheticMouse' }
            return
        }
        'Msvm_VideoHead' {
            if ($running) {
                $size = @(Get-CimSeedValue $wmi 'Resolution' @(1024, 768))
                New-CimStubDevice -VM $vm -ClassName $ResultClassName -DeviceId 'VideoHead' -Extra ([ordered]@{
                    CurrentHorizontalResolution = [uint32]$size[0]
                    CurrentVerticalResolution   = [uint32]$size[1]
                })
            }
            return
        }
        'Msvm_KvpExchangeComponent' {
            if ($running) {
                # What the guest reported; $null when it reported nothing (a CIM array left unset).
                $items = $null
                $kvp = Get-CimSeedValue $wmi 'Kvp' $null
                if ($null -ne $kvp) {
                    $items = [string[]]@(foreach ($property in $kvp.PSObject.Properties) { New-CimStubKvpItem -Name $property.Name -Data ([string]$property.Value) })
                }
                New-CimStubDevice -VM $vm -ClassName $ResultClassName -DeviceId 'KvpExchange' -Extra ([ordered]@{
                    GuestIntrinsicExchangeItems = $items
                })
            }
            return
        }
        default { return }
    }
}

function Invoke-CimMethod {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [psobject]$InputObject,

        [Parameter(Mandatory = $true)]
        [string]$MethodName,

        [System.Collections.IDictionary]$Arguments
    )
    $class = Get-CimStubClass $InputObject
    $logged = [ordered]@{}
    if ($null -ne $Arguments) {
        foreach ($key in @($Arguments.Keys)) { $logged[[string]$key] = ConvertTo-CimStubArgument $Arguments[$key] }
    }
    # The VM the call is about: a device's SystemName, or the thumbnail's TargetSystem.
    $vmId = ''
    $system = $InputObject.PSObject.Properties['SystemName']
    if ($class -ne 'Msvm_VirtualSystemManagementService' -and $null -ne $system) { $vmId = [string]$system.Value }
    if ($null -ne $Arguments -and $Arguments.Contains('TargetSystem') -and $null -ne $Arguments['TargetSystem']) {
        $vmId = [string]$Arguments['TargetSystem'].VirtualSystemIdentifier
    }
    Write-CimStubCall -Command 'Invoke-CimMethod' -Data ([ordered]@{ class = $class; method = $MethodName; vmId = $vmId; arguments = $logged })

    $known = @{
        'Msvm_Keyboard'                       = @('TypeText', 'TypeKey', 'TypeCtrlAltDel', 'PressKey', 'ReleaseKey')
        'Msvm_SyntheticMouse'                 = @('SetAbsolutePosition', 'ClickButton', 'SetButtonState')
        'Msvm_VirtualSystemManagementService' = @('GetVirtualSystemThumbnailImage')
    }
    if (-not $known.ContainsKey($class) -or $known[$class] -notcontains $MethodName) {
        throw ('HvkubeCimStub: method {0}.{1} is not modelled' -f $class, $MethodName)
    }
    $vm = Get-CimStubVM -Id $vmId
    $wmi = $null
    if ($null -ne $vm -and $script:Wmi.ContainsKey(([guid]$vm.Id).ToString())) { $wmi = $script:Wmi[([guid]$vm.Id).ToString()] }

    $result = New-Object psobject
    $result.PSObject.TypeNames.Insert(0, 'Microsoft.Management.Infrastructure.CimMethodResult')
    if ($MethodName -eq 'GetVirtualSystemThumbnailImage') {
        # RGB565, two bytes a pixel; none for a VM that does not run (32775: invalid state).
        $image = $null
        $code = 32775
        if ($null -ne $vm -and "$($vm.State)" -eq 'Running') {
            $count = [int]$Arguments['WidthPixels'] * [int]$Arguments['HeightPixels'] * 2
            $image = New-Object byte[] $count
            for ($i = 0; $i -lt $count; $i++) { $image[$i] = [byte]($i % 251) }
            $code = 0
        }
        Add-CimStubProperty -InputObject $result -Name ImageData -Value $image
        Add-CimStubProperty -InputObject $result -Name ReturnValue -Value ([uint32]$code)
    } elseif ([bool](Get-CimSeedValue $wmi 'Jobs' $false)) {
        # Answers "job started" with the job (complete at once), for the dispatcher's Job handling.
        $instanceId = 'Microsoft:{0}' -f [guid]::NewGuid().ToString().ToUpperInvariant()
        $script:Jobs[$instanceId] = [ordered]@{
            InstanceID       = $instanceId
            JobState         = [uint16]7
            ErrorCode        = [uint16]0
            ErrorDescription = $null
        }
        $job = New-CimStubInstance -ClassName 'Msvm_ConcreteJob' -Namespace $script:Namespace -Properties $script:Jobs[$instanceId]
        Add-CimStubProperty -InputObject $result -Name Job -Value $job
        Add-CimStubProperty -InputObject $result -Name ReturnValue -Value ([uint32]4096)
    } else {
        # The keyboard and mouse methods have no Job output: the result has no such property.
        Add-CimStubProperty -InputObject $result -Name ReturnValue -Value ([uint32]0)
    }
    Add-CimStubProperty -InputObject $result -Name PSComputerName -Value $null
    return $result
}

Import-CimStubHost -Path $env:HVKUBE_STUB_HOST

Export-ModuleMember -Function @('Get-CimInstance', 'Get-CimAssociatedInstance', 'Invoke-CimMethod')
